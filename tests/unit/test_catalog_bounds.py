"""Every field of every event is bounded: a bus client cannot make a consumer store 1 MB
strings, infinite costs or million-item lists (the hostile-events findings, as a class)."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from shared.events.catalog import CATALOG, CycleRequested, SynthCompleted, TrainingCompleted

REF = {"uri": "file:///x", "sha256": "0" * 64, "size_bytes": 1}


def _walk(schema: dict, defs: dict, path: str):
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        yield from _walk(defs[name], defs, f"{path}<{name}>")
        return
    for key in ("anyOf", "allOf", "oneOf"):
        for i, sub in enumerate(schema.get(key, [])):
            yield from _walk(sub, defs, f"{path}|{i}")
    kind = schema.get("type")
    yield path, schema
    if kind == "object":
        for name, sub in schema.get("properties", {}).items():
            yield from _walk(sub, defs, f"{path}.{name}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            yield from _walk(extra, defs, f"{path}[*]")
    if kind == "array":
        yield from _walk(schema.get("items", {}), defs, f"{path}[]")


def _bounded(path: str, schema: dict) -> str | None:
    kind = schema.get("type")
    if kind == "string" and not (
        "maxLength" in schema
        or "enum" in schema
        or "const" in schema
        or schema.get("format") in {"uuid", "date-time"}
    ):
        return f"{path}: string without maxLength"
    if kind == "array" and "maxItems" not in schema:
        return f"{path}: array without maxItems"
    is_map = isinstance(schema.get("additionalProperties"), dict)
    if kind == "object" and is_map and "maxProperties" not in schema:
        return f"{path}: map without maxProperties"
    if kind == "integer" and "maximum" not in schema and "enum" not in schema:
        return f"{path}: integer without maximum"
    return None


@pytest.mark.parametrize("subject", sorted(CATALOG))
def test_every_field_is_bounded(subject: str):
    schema = CATALOG[subject].model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    problems = [p for path, s in _walk(schema, defs, subject) if (p := _bounded(path, s))]
    assert not problems, problems


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e309"])
def test_non_finite_numbers_are_refused(value: str):
    body = SynthCompleted(
        cycle_id=uuid.uuid4(),
        producer="synth-data",
        task_name="t",
        task_version=1,
        task_spec=REF,
        batch=REF,
        examples=1,
    ).model_dump_json()
    with pytest.raises(ValidationError, match="finite"):
        SynthCompleted.model_validate_json(
            body[:-1] + f', "cost_usd": {value}}}'.replace('"cost_usd":0.0,', "")
        )


def test_validation_loss_must_be_finite_and_not_negative():
    fields = dict(
        cycle_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        producer="trainer",
        task_name="t",
        task_version=1,
        task_spec=REF,
        dataset_version="v",
        base_model=REF,
        adapter=REF,
        report=REF,
    )
    for bad in (float("inf"), -1.0):
        with pytest.raises(ValidationError):
            TrainingCompleted(**fields, validation_loss=bad)


def test_an_over_long_producer_is_refused():
    body = json.dumps({"cycle_id": str(uuid.uuid4()), "task_name": "t", "producer": "p" * 10**6})
    with pytest.raises(ValidationError, match="at most 64"):
        CycleRequested.model_validate_json(body)
