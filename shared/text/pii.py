"""PII scrubbing: typed placeholders (<EMAIL>, <CARD>, ...) instead of personal data.

A scrubber is anything with a `kind` and `scrub(text) -> (text, count)`; `SCRUBBERS` is the
registry, in the order they run. Order matters: e-mail addresses first (they contain digits and
dots other patterns would bite into), then IBANs and cards before phone numbers, so a card's
digits are never half-replaced as a phone. Patterns that admit look-alikes are confirmed by a
checksum or a parser (Luhn for cards, mod-97 for IBANs, `ipaddress` for IPs): an order number
that fails Luhn is not a card and stays, because training data full of false placeholders
teaches the student to invent them.

A deployment adds its own with `register(scrubber)` (e.g. national ID formats), or names
"module:attribute" entries in a service's settings (CURATION_EXTRA_SCRUBBERS). It lives in
`shared` because every path by which text becomes training data (curation's batches,
feedback-collector's production traces) must scrub with the same rules.
"""

from __future__ import annotations

import importlib
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class Scrubber(Protocol):
    kind: str

    def scrub(self, text: str) -> tuple[str, int]: ...


@dataclass(frozen=True)
class PatternScrubber:
    """Replace matches of `pattern` that `valid` accepts with <KIND>."""

    kind: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] = lambda _: True

    def scrub(self, text: str) -> tuple[str, int]:
        count = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal count
            found = match.group(0)
            if not self.valid(found):
                return found
            count += 1
            return f"<{self.kind}>"

        return self.pattern.sub(replace, text), count


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    iban = candidate.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


class IbanScrubber:
    """IBANs, written compact or in groups of four; a trailing word caught by the grouping
    ("...0130 00 OK") is dropped group by group until the checksum holds."""

    kind = "IBAN"
    _pattern = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){3,8}\b")

    def scrub(self, text: str) -> tuple[str, int]:
        count = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal count
            found = match.group(0)
            groups = found.split(" ")
            for end in range(len(groups), 0, -1):
                head = " ".join(groups[:end])
                if iban_valid(head):
                    count += 1
                    rest = found[len(head) :]
                    return "<IBAN>" + rest
            return found

        return self._pattern.sub(replace, text), count


def _ip_valid(version: int) -> Callable[[str], bool]:
    def valid(candidate: str) -> bool:
        try:
            return ipaddress.ip_address(candidate).version == version
        except ValueError:
            return False

    return valid


def _phone_valid(candidate: str) -> bool:
    return 7 <= sum(c.isdigit() for c in candidate) <= 15


EMAIL = PatternScrubber(
    "EMAIL", re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
)
CARD = PatternScrubber("CARD", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), luhn_valid)
IPV6 = PatternScrubber(
    "IPV6",
    re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:.])"),
    _ip_valid(6),
)
IPV4 = PatternScrubber(
    "IPV4", re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]|\.\d)"), _ip_valid(4)
)
# Deliberately narrow: an international number (+CC ...), a North-American (555) 123-4567 or
# 555-123-4567 style, or a national trunk-prefixed 0xx xxxx xxxx. Dates, amounts and order
# numbers in tickets look like digits too, and must survive.
PHONE = PatternScrubber(
    "PHONE",
    re.compile(
        r"(?<![\w+])(?:"
        r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}"
        r"|\(\d{3}\) ?\d{3}[ .-]\d{4}"
        r"|\d{3}[.-]\d{3}[.-]\d{4}"
        r"|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}"
        r")(?![\w-]|[ .]\d)"
    ),
    _phone_valid,
)

SCRUBBERS: dict[str, Scrubber] = {}


def register(scrubber: Scrubber) -> Scrubber:
    if not isinstance(scrubber, Scrubber):
        raise TypeError(f"{scrubber!r} has no `kind` and `scrub(text)`")
    SCRUBBERS[scrubber.kind] = scrubber
    return scrubber


for _builtin in (EMAIL, IbanScrubber(), CARD, IPV6, IPV4, PHONE):
    register(_builtin)


def load_extra(entries: Iterable[str]) -> None:
    """Register scrubbers named "module:attribute" (an instance, or a class to instantiate)."""
    for entry in entries:
        module, _, attr = entry.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        register(obj() if isinstance(obj, type) else obj)


def scrub(text: str, scrubbers: Iterable[Scrubber] | None = None) -> tuple[str, Counter[str]]:
    counts: Counter[str] = Counter()
    for scrubber in SCRUBBERS.values() if scrubbers is None else scrubbers:
        text, n = scrubber.scrub(text)
        if n:
            counts[scrubber.kind] += n
    return text, counts
