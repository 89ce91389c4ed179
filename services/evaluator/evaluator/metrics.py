"""Scoring, pure: replies in, numbers out. No model, no I/O.

Choices a reader should know:
- A reply is valid JSON only if the whole reply parses (after trimming whitespace and one
  Markdown code fence). Trailing chatter makes it invalid: a client parsing the served output
  would fail the same way.
- Fields are the golden output's top-level keys; a field matches when the values are equal,
  strings compared after trimming and case-folding, so "High" and "high " count as the same.
- A negative example (the right answer is to decline or escalate) is refused correctly when
  every field of `spec.negatives.expected` matches; with no expectation set, the golden output
  is the judge.
- Slices: a negative example belongs to the slice "negative" (as in TaskSpec.slices), every
  other example to its use case.
- The primary metric (thresholds.primary_metric) is read off a Summary: exact_row is the task
  accuracy, mean_field_accuracy the per-field accuracies averaged over fields, <field>_accuracy
  one field's. None when the golden outputs have no such field: a gate on it is not measured.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from statistics import fmean
from typing import Any

from shared.tasks.values import values_match

from .data import GoldenRow, ProbeRow

NEGATIVE_SLICE = "negative"
_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)
_PUNCT = re.compile(r"[^\w\s]")
_SPACE = re.compile(r"\s+")


def slice_of(row: GoldenRow) -> str:
    return NEGATIVE_SLICE if row.negative else row.use_case


def parse_reply(text: str) -> tuple[bool, Any]:
    """(parsed, value): whether the whole reply is one JSON document, and that document."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return True, json.loads(body)
    except ValueError:
        return False, None


@cache
def _validator(schema_json: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_json))


@dataclass(frozen=True)
class ExampleScore:
    slice: str
    negative: bool
    json_valid: bool
    schema_valid: bool | None
    fields: dict[str, bool]
    correct: bool
    refused: bool | None


def score_example(
    reply: str,
    row: GoldenRow,
    *,
    schema: Mapping[str, Any] | None,
    refusal: Mapping[str, Any],
) -> ExampleScore:
    parsed, value = parse_reply(reply)
    golden_parsed, golden = parse_reply(row.output)
    schema_valid = None
    if schema is not None:
        schema_valid = parsed and _validator(json.dumps(schema, sort_keys=True)).is_valid(value)
    if golden_parsed and isinstance(golden, dict):
        got = value if parsed and isinstance(value, dict) else {}
        fields = {k: k in got and values_match(got[k], v) for k, v in golden.items()}
        correct = parsed and all(fields.values()) if fields else values_match(value, golden)
    else:
        # A plain-text task: the whole reply is the one field.
        fields = {}
        correct = _norm_text(reply) == _norm_text(row.output)
    refused = None
    if row.negative:
        if refusal:
            got = value if parsed and isinstance(value, dict) else {}
            refused = all(k in got and values_match(got[k], v) for k, v in refusal.items())
        else:
            refused = correct
    return ExampleScore(slice_of(row), row.negative, parsed, schema_valid, fields, correct, refused)


@dataclass(frozen=True)
class Summary:
    """Rates over a group of examples; None where nothing in the group could be measured."""

    n: int
    accuracy: float
    json_validity: float
    schema_validity: float | None
    field_match: dict[str, float]
    refusal: float | None

    @property
    def mean_field_accuracy(self) -> float | None:
        return fmean(self.field_match.values()) if self.field_match else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "mean_field_accuracy": self.mean_field_accuracy,
            "json_validity": self.json_validity,
            "schema_validity": self.schema_validity,
            "field_match": self.field_match,
            "refusal": self.refusal,
        }


def primary(summary: Summary | Mapping[str, Any], metric: str) -> float | None:
    """The value of thresholds.primary_metric on a group of examples (a Summary or its dict)."""
    values = summary.as_dict() if isinstance(summary, Summary) else summary
    if metric == "exact_row":
        return values["accuracy"]
    if metric == "mean_field_accuracy":
        return values["mean_field_accuracy"]
    return values["field_match"].get(metric.removesuffix("_accuracy"))


def _rate(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def summarise(scores: Sequence[ExampleScore]) -> Summary:
    schema = [s.schema_valid for s in scores if s.schema_valid is not None]
    refusals = [s.refused for s in scores if s.refused is not None]
    names = sorted({name for s in scores for name in s.fields})
    return Summary(
        n=len(scores),
        accuracy=_rate([s.correct for s in scores]),
        json_validity=_rate([s.json_valid for s in scores]),
        schema_validity=_rate(schema) if schema else None,
        field_match={n: _rate([s.fields[n] for s in scores if n in s.fields]) for n in names},
        refusal=_rate(refusals) if refusals else None,
    )


@dataclass(frozen=True)
class TaskMetrics:
    overall: Summary
    slices: dict[str, Summary] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall.as_dict(),
            "slices": {k: v.as_dict() for k, v in self.slices.items()},
        }


def task_metrics(
    replies: Mapping[str, str],
    rows: Sequence[GoldenRow],
    *,
    schema: Mapping[str, Any] | None,
    refusal: Mapping[str, Any],
) -> TaskMetrics:
    """Score every golden row; a row with no reply counts as wrong."""
    scores = [score_example(replies.get(r.id, ""), r, schema=schema, refusal=refusal) for r in rows]
    by_slice: dict[str, list[ExampleScore]] = {}
    for score in scores:
        by_slice.setdefault(score.slice, []).append(score)
    return TaskMetrics(summarise(scores), {k: summarise(v) for k, v in sorted(by_slice.items())})


def _norm_text(text: str) -> str:
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.casefold())).strip()


def probe_correct(reply: str, answer: str) -> bool:
    """Right when the normalised answer appears, on word boundaries, in the normalised reply."""
    target = _norm_text(answer)
    return bool(target) and f" {target} " in f" {_norm_text(reply)} "


def probe_accuracy(replies: Mapping[str, str], probes: Sequence[ProbeRow]) -> float | None:
    if not probes:
        return None
    return _rate([probe_correct(replies.get(p.id, ""), p.answer) for p in probes])


def percentile(values: Iterable[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100), as numpy's default does."""
    data = sorted(values)
    if not data:
        return None
    pos = (len(data) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def latency_summary(values: Sequence[float]) -> dict[str, float | None]:
    return {"n": len(values), "p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95)}


def judge_agreement(verdicts: Sequence[bool], exact: Sequence[bool]) -> dict[str, float | None]:
    """How often an LLM judge's pass/fail agrees with exact match against the golden labels."""
    if not verdicts:
        return {"pass_rate": None, "agreement": None}
    agree = [v == e for v, e in zip(verdicts, exact, strict=True)]
    return {"pass_rate": _rate(verdicts), "agreement": _rate(agree)}
