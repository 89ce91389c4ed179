"""Which hosts may receive task data: host names normalised, allow-lists, the refusal text.

An entry is `host` (any port) or `host:port` (that port only); IPv6 as `::1`, `[::1]` or
`[::1]:8000`. No schemes, paths, userinfo or wildcards: an allow-list is the residency
contract, and `*.example.com` would allow hosts nobody reviewed.

Hosts compare after the normalisation the HTTP client itself applies before it connects
(httpx2 `_urlparse.encode_host`): lower case, IDNA for non-ASCII names through the same `idna`
call, plus a trailing dot stripped (`llm.eu.` is `llm.eu` to DNS) and IP addresses in their
canonical form. So `Bücher.Example.`, `bücher.example` and `xn--bcher-kva.example` are one
host, and a URL cannot look different to this check than to the socket. A URL's port is its
explicit one or its scheme's default, so `https://h/v1` matches `h:443`.

Light on purpose: shared.settings validates its list with this module at start-up.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import idna

PLATFORM_SETTING = "DISTILLERY_ALLOWED_TEACHER_HOSTS"
SPEC_FIELD = "residency.allowed_teacher_hosts"
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_host(host: str) -> str:
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.lower().removesuffix(".")
    if not name:
        raise ValueError(f"not a host name: {host!r}")
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        pass
    if name.isascii():
        if not all(c.isalnum() or c in "-._" for c in name):
            raise ValueError(f"not a host name: {host!r}")
        return name
    try:
        return idna.encode(name).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"not a host name: {host!r} ({exc})") from None


@dataclass(frozen=True)
class HostEntry:
    host: str
    port: int | None = None  # None: any port

    def allows(self, target: Target) -> bool:
        return self.host == target.host and self.port in (None, target.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


@dataclass(frozen=True)
class Target:
    """Where a request would go: the connection's host and port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return str(HostEntry(self.host, self.port))


def parse_entry(text: str) -> HostEntry:
    raw = text.strip()
    if not raw or any(c in raw for c in "/@*?#\\") or "://" in raw:
        raise ValueError(f"allow-list entry {text!r}: expected host or host:port")
    port: str | None = None
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"allow-list entry {text!r}: expected [ipv6] or [ipv6]:port")
        port = rest[1:] if rest else None
    elif raw.count(":") == 1:
        host, port = raw.split(":")
    else:
        host = raw  # a name, an IPv4 address, or a bare IPv6 address (two colons or more)
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"allow-list entry {text!r}: port must be 1-65535")
    try:
        return HostEntry(normalise_host(host), int(port) if port is not None else None)
    except ValueError as exc:
        raise ValueError(f"allow-list entry {text!r}: {exc}") from None


def parse_host_list(value: Any) -> list[str]:
    """A setting's raw value: a list, JSON list text, or comma-separated text."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        items = json.loads(text) if text.startswith("[") else text.split(",")
    else:
        items = list(value)
    entries = [str(item).strip() for item in items if str(item).strip()]
    for entry in entries:
        parse_entry(entry)  # a typo fails at start-up, not as a refusal mid-cycle
    return entries


def target_of(url: Any) -> Target:
    """The host and port a URL connects to, parsed by the HTTP client's own URL class."""
    import httpx2  # the openai SDK's transport; ~0.2 s, so not at import time

    parsed = url if isinstance(url, httpx2.URL) else httpx2.URL(str(url))
    scheme = parsed.scheme
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"scheme {scheme!r} is not http(s)")
    if parsed.userinfo:
        # Credentials belong in api_key_env, and `allowed@evil` is a classic way to make a
        # URL look like it points somewhere it does not. The URL is not repeated: it holds them.
        raise ValueError("the URL carries userinfo (user:password@); put the key in api_key_env")
    host = normalise_host(parsed.raw_host.decode("ascii"))
    return Target(scheme, host, parsed.port or DEFAULT_PORTS[scheme])


@dataclass(frozen=True)
class AllowList:
    """One list a target must pass, named in refusals by where an operator changes it."""

    name: str
    entries: tuple[str, ...]
    empty_allows_any: bool = False

    def allows(self, target: Target) -> bool:
        if not self.entries:
            return self.empty_allows_any
        return any(entry.allows(target) for entry in _parsed(self.entries))

    def describe(self) -> str:
        shown = sorted({str(e) for e in _parsed(self.entries)})
        unreadable = [e for e in self.entries if _parsed((e,)) == []]
        text = f"{self.name} {shown}"
        if unreadable:
            text += f" (unreadable, allowing nothing: {unreadable})"
        if not self.entries and self.empty_allows_any:
            text += " (empty: no restriction)"
        return text


def _parsed(entries: Iterable[str]) -> list[HostEntry]:
    out = []
    for entry in entries:
        try:
            out.append(parse_entry(entry))
        except ValueError:
            continue  # fail closed: an entry nobody can read allows nothing
    return out


def spec_list(hosts: Sequence[str]) -> AllowList:
    return AllowList(SPEC_FIELD, tuple(hosts))


def operator_list(hosts: Sequence[str], name: str = PLATFORM_SETTING) -> AllowList:
    """An operator's switch: empty means this deployment adds no restriction of its own."""
    return AllowList(name, tuple(hosts), empty_allows_any=True)


def refusal(url: str, lists: Sequence[AllowList]) -> str | None:
    """Why no request may go to `url`, or None. Every list must allow it."""
    if not lists:
        return "no allow-list was given; no request was sent"
    try:
        target = target_of(url)
    except Exception as exc:  # any URL the HTTP client cannot parse is refused
        return f"teacher base_url refused: {exc}; no request was sent"
    denied = [lst for lst in lists if not lst.allows(target)]
    if not denied:
        return None
    verdicts = "; ".join(
        f"{lst.describe()} {'does not allow' if lst in denied else 'allows'} it" for lst in lists
    )
    return (
        f"teacher host {target.host!r} (port {target.port}) is outside the residency "
        f"allow-list: {verdicts}; no request was sent"
    )
