"""The grammar and the served response_format list the answer's keys in one order."""

from __future__ import annotations

from pathlib import Path

from shared.models.decoding import ordered_schema, response_format
from shared.tasks.load import load_spec, spec_from_json
from shared.tasks.registry import canonical_json

PACK = Path(__file__).resolve().parents[2] / "tasks" / "ticket-triage"


def test_a_stored_spec_decodes_in_the_order_the_student_was_trained_on():
    authored = load_spec(PACK / "spec.yaml")
    stored = spec_from_json(canonical_json(authored))
    # Canonical JSON sorts the properties; the grammar must not follow that order.
    assert list(stored.output_schema["properties"]) != stored.output_keys
    assert list(ordered_schema(stored.output_schema)["properties"]) == stored.output_keys
    served = response_format(stored.output_schema)["json_schema"]["schema"]
    assert list(served["properties"]) == authored.output_keys


def test_properties_outside_required_follow_in_sorted_order():
    schema = {"type": "object", "required": ["b"], "properties": {"c": {}, "a": {}, "b": {}}}
    assert list(ordered_schema(schema)["properties"]) == ["b", "a", "c"]
    assert ordered_schema({"type": "string"}) == {"type": "string"}
