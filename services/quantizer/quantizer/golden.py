"""Golden-set rows and the spec's primary metric on replies: pure, engine-agnostic.

Retention is a ratio of two scores made here with the same rules, the variant's over the merged
model's, so it does not depend on how the evaluator words its report. Values compare by the
evaluator's rule (shared.tasks.values).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.tasks.values import normalise, values_match


class GoldenRow(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    input: str
    output: str
    use_case: str = ""
    negative: bool = False


class GoldenError(ValueError):
    pass


def parse_golden(data: bytes) -> list[GoldenRow]:
    rows = []
    for n, line in enumerate(data.decode().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(GoldenRow.model_validate_json(line))
        except ValidationError as exc:
            raise GoldenError(f"golden set line {n}: {exc.errors()[0]['msg']}") from None
    if not rows:
        raise GoldenError("golden set is empty")
    return rows


def _parse(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text.strip())
    except ValueError:
        return False, None


def _fields(reply: str, expected: str) -> tuple[bool, dict[str, bool]]:
    """(whole row right, per-field right)."""
    ok, got = _parse(reply)
    golden_ok, golden = _parse(expected)
    if golden_ok and isinstance(golden, dict):
        got = got if ok and isinstance(got, dict) else {}
        fields = {k: k in got and values_match(got[k], v) for k, v in golden.items()}
        return ok and all(fields.values()), fields
    return normalise(reply) == normalise(expected), {}


def score(
    replies: Mapping[str, str],
    rows: Sequence[GoldenRow],
    metric: str,
    schema: Mapping[str, Any] | None,
) -> dict[str, float | None]:
    """quality (the spec's primary metric), exact_row, mean_field_accuracy, schema_validity."""
    exact, field_hits, valid = [], {}, []
    validator = None
    if schema is not None:
        from jsonschema import Draft202012Validator

        validator = Draft202012Validator(dict(schema))
    for row in rows:
        reply = replies.get(row.id, "")
        correct, fields = _fields(reply, row.output)
        exact.append(correct)
        for name, hit in fields.items():
            field_hits.setdefault(name, []).append(hit)
        if validator is not None:
            ok, value = _parse(reply)
            valid.append(ok and validator.is_valid(value))
    per_field = {k: sum(v) / len(v) for k, v in field_hits.items()}
    out: dict[str, float | None] = {
        "exact_row": sum(exact) / len(exact),
        "mean_field_accuracy": sum(per_field.values()) / len(per_field) if per_field else None,
        "schema_validity": sum(valid) / len(valid) if valid else None,
    }
    for name, value in per_field.items():
        out[f"{name}_accuracy"] = value
    out["quality"] = out.get(metric)
    return out
