"""The student's error patterns: per field, which label it gives where the golden set has another.

Pure. They travel on `cycle.iteration.requested` to synth-data, which may be a service with
weaker data handling than the golden set needs, so they carry labels only, never input text:
- a field counts only when the output schema enumerates its values (enum, const, boolean).
  Free text, numbers and a task without a schema have no patterns: their values are not a
  closed set of labels and could quote the input;
- what the student replied is named only when it is one of those labels: a reply that did not
  parse is "<invalid>", a missing key "<missing>", anything else "<other>" (a student that
  copies the ticket into a field must not carry the ticket out);
- a label that shares 20 characters with a golden input is dropped as well, whatever the schema
  says, since then it is text from the input.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .data import GoldenRow
from .metrics import parse_reply, values_match

INVALID = "<invalid>"
MISSING = "<missing>"
OTHER = "<other>"
# Longer than this is no label (the catalog allows 256 characters; names allow 128).
MAX_LABEL_CHARS = 128
QUOTE_CHARS = 20


@dataclass(frozen=True)
class FieldConfusion:
    field: str
    expected: str
    got: str
    count: int


def _key(value: Any) -> tuple[str, Any] | None:
    """A scalar's identity as a label, typed so that True, 1 and "true" stay apart."""
    if isinstance(value, bool):
        return ("bool", value)
    if value is None:
        return ("null", None)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, str):
        return ("str", value.strip().casefold())
    return None


def _spelling(value: Any) -> str:
    return value.strip() if isinstance(value, str) else json.dumps(value)


def vocabularies(schema: Mapping[str, Any] | None) -> dict[str, dict[tuple[str, Any], str]]:
    """Per field, the labels the schema allows: their typed key -> how they are spelled."""
    out: dict[str, dict[tuple[str, Any], str]] = {}
    for name, sub in ((schema or {}).get("properties") or {}).items():
        if not isinstance(sub, dict) or len(name) > MAX_LABEL_CHARS:
            continue
        values = list(sub.get("enum") or []) + ([sub["const"]] if "const" in sub else [])
        if sub.get("type") == "boolean":
            values += [True, False]
        labels = {
            key: _spelling(v)
            for v in values
            if (key := _key(v)) is not None and 0 < len(_spelling(v)) <= MAX_LABEL_CHARS
        }
        if labels:
            out[name] = labels
    return out


def _quoting(labels: set[str], inputs: Sequence[str]) -> set[str]:
    """The labels that contain QUOTE_CHARS characters of some input, case-folded."""
    long = {label for label in labels if len(label) >= QUOTE_CHARS}
    if not long:
        return set()
    text = [i.casefold() for i in inputs]
    return {
        label
        for label in long
        if any(
            label.casefold()[at : at + QUOTE_CHARS] in t
            for at in range(len(label) - QUOTE_CHARS + 1)
            for t in text
        )
    }


def error_patterns(
    replies: Mapping[str, str],
    rows: Sequence[GoldenRow],
    *,
    schema: Mapping[str, Any] | None,
    top: int,
) -> list[FieldConfusion]:
    """The `top` most frequent (expected -> got) confusions of each labelled field."""
    vocab = vocabularies(schema)
    quoting = _quoting(
        {s for labels in vocab.values() for s in labels.values()}, [r.input for r in rows]
    )
    vocab = {
        name: {k: s for k, s in labels.items() if s not in quoting}
        for name, labels in vocab.items()
    }
    counts: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        golden_ok, golden = parse_reply(row.output)
        if not golden_ok or not isinstance(golden, dict):
            continue
        parsed, reply = parse_reply(replies.get(row.id, ""))
        got_all = reply if parsed and isinstance(reply, dict) else None
        for name, expected in golden.items():
            labels = vocab.get(name, {})
            key = _key(expected)
            if key not in labels:
                continue
            if got_all is not None and name in got_all and values_match(got_all[name], expected):
                continue
            if got_all is None:
                got = INVALID
            elif name not in got_all:
                got = MISSING
            else:
                got = labels.get(_key(got_all[name]) or ("", None), OTHER)
            counts[(name, labels[key], got)] += 1
    per_field: dict[str, list[FieldConfusion]] = {}
    for (name, expected, got), n in sorted(
        counts.items(), key=lambda item: (item[0][0], -item[1], item[0][1], item[0][2])
    ):
        kept = per_field.setdefault(name, [])
        if len(kept) < top:
            kept.append(FieldConfusion(name, expected, got, n))
    return [c for name in sorted(per_field) for c in per_field[name]]
