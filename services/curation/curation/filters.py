"""Quality filters: one verdict per row, the first rule it breaks, with a detail a human reads.

Rows reach these already normalised. Structured outputs are parsed once; their garbage check
looks at the string values only, since JSON punctuation is not garbage.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from .normalize import parse_json, word_tokens

MIN_ALNUM_SHARE = 0.5  # of non-space characters; below it a text is mostly symbols
MAX_CHAR_RUN = 20  # "!!!!!!!!!!!!!!!!!!!!" or "aaaaaaaaaaaaaaaaaaaa": a decoding loop
_CHAR_RUN = re.compile(rf"(\S)\1{{{MAX_CHAR_RUN - 1},}}")
MIN_DISTINCT_WORD_SHARE = 0.25  # over >= REPETITION_MIN_WORDS words: the same phrase looping
REPETITION_MIN_WORDS = 20


@dataclass(frozen=True)
class Verdict:
    reason: str
    detail: str


@dataclass
class QualityRules:
    min_chars: int
    max_chars: int
    output_schema: dict[str, Any] | None = None
    negative_expected: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._validator = Draft202012Validator(self.output_schema) if self.output_schema else None

    @property
    def structured(self) -> bool:
        return self._validator is not None

    def check(self, text_in: str, text_out: str, negative: bool) -> Verdict | None:
        return (
            _bounds("input", text_in, self.min_chars, self.max_chars)
            or self.check_output(text_out, negative)
            or _garbage("input", text_in)
        )

    def check_output(self, text_out: str, negative: bool) -> Verdict | None:
        problem = _bounds("output", text_out, self.min_chars, self.max_chars)
        if problem:
            return problem
        prose = text_out
        if self._validator is not None:
            ok, value = parse_json(text_out)
            if not ok:
                return Verdict("schema_invalid", "output is not JSON")
            error = next(iter(self._validator.iter_errors(value)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                return Verdict("schema_invalid", f"{where}: {error.message}"[:500])
            if negative and not _matches(value, self.negative_expected):
                return Verdict("negative_mismatch", f"expected {self.negative_expected}")
            prose = " ".join(_strings(value))
        return _garbage("output", prose)


def _bounds(name: str, text: str, low: int, high: int) -> Verdict | None:
    if not text.strip():
        return Verdict("empty", f"{name} is empty")
    if len(text) < low:
        return Verdict("too_short", f"{name} has {len(text)} chars < {low}")
    if len(text) > high:
        return Verdict("too_long", f"{name} has {len(text)} chars > {high}")
    return None


def _garbage(name: str, text: str) -> Verdict | None:
    problem = garbage(text)
    return Verdict("garbage", f"{name}: {problem}") if problem else None


def _matches(value: Any, expected: dict[str, Any]) -> bool:
    if not expected:
        return True
    return isinstance(value, dict) and all(value.get(k) == v for k, v in expected.items())


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def garbage(text: str) -> str | None:
    """Why `text` looks degenerate, or None. Empty prose (e.g. an all-enum output) is fine."""
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return None
    alnum = sum(c.isalnum() for c in visible) / len(visible)
    if alnum < MIN_ALNUM_SHARE:
        return f"only {alnum:.0%} of characters are letters or digits"
    run = _CHAR_RUN.search(text)
    if run:
        return f"{run.group(1)!r} repeated {len(run.group(0))} times"
    words = word_tokens(text)
    if len(words) >= REPETITION_MIN_WORDS:
        distinct = len(set(words)) / len(words)
        if distinct < MIN_DISTINCT_WORD_SHARE:
            top = Counter(words).most_common(1)[0][0]
            return f"{distinct:.0%} distinct words (e.g. {top!r} loops)"
    return None
