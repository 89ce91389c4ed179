"""Which services `distillery up` starts.

Installed services declare themselves in the `distillery.services` entry-point group
(`name = "package.main:create_app"`). `DISTILLERY_EXTRA_SERVICES="name=module:create_app,..."`
adds (or overrides) services without packaging them, which is how tests run their fixtures.
Entries are not imported here: a broken one must fail in its own process, not in the CLI.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points

GROUP = "distillery.services"
EXTRA_ENV = "DISTILLERY_EXTRA_SERVICES"
# Which registered services to start: comma-separated names, or "none"; unset means all.
SELECT_ENV = "DISTILLERY_SERVICES"

# Names become log file names and table rows: keep them boring.
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_ENTRY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    entry: str  # "module:create_app", handed to `python -m shared.runtime.serve`
    source: str  # "entry-point" or the env variable it came from


class RegistryError(ValueError):
    pass


def _spec(name: str, entry: str, source: str) -> ServiceSpec:
    name, entry = name.strip(), entry.strip()
    if not _NAME.match(name):
        raise RegistryError(
            f"service name {name!r} ({source}) must be lowercase letters, digits, '-' or '_'"
        )
    if not _ENTRY.match(entry):
        raise RegistryError(f"service {name!r} ({source}): expected module:function, got {entry!r}")
    return ServiceSpec(name, entry, source)


def parse_extra(value: str) -> list[ServiceSpec]:
    specs: list[ServiceSpec] = []
    for item in value.split(","):
        if not item.strip():
            continue
        name, sep, entry = item.partition("=")
        if not sep:
            raise RegistryError(f"{EXTRA_ENV}: expected name=module:function, got {item.strip()!r}")
        specs.append(_spec(name, entry, EXTRA_ENV))
    return specs


def installed() -> list[ServiceSpec]:
    return [_spec(ep.name, ep.value, "entry-point") for ep in entry_points(group=GROUP)]


def discover(
    env: Mapping[str, str] | None = None, only: list[str] | None = None
) -> list[ServiceSpec]:
    """Installed services plus the extra ones, by name; `only` (or $DISTILLERY_SERVICES)
    keeps the named ones.

    Raises RegistryError for malformed entries and for `only` names nobody registered.
    """
    env = os.environ if env is None else env
    if only is None and (selected := env.get(SELECT_ENV, "").strip()):
        if selected == "none":
            return []
        only = [name.strip() for name in selected.split(",") if name.strip()]
    by_name: dict[str, ServiceSpec] = {s.name: s for s in installed()}
    for spec in parse_extra(env.get(EXTRA_ENV, "")):
        by_name[spec.name] = spec
    if only:
        unknown = sorted(set(only) - set(by_name))
        if unknown:
            known = ", ".join(sorted(by_name)) or "none"
            raise RegistryError(f"unknown service(s): {', '.join(unknown)} (registered: {known})")
        return [by_name[n] for n in sorted(by_name) if n in only]
    return [by_name[n] for n in sorted(by_name)]
