"""Task specs and the files they name: every problem reported with its exact field (and, for
data files, its line), before anything is stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shared.cli.task import to_yaml
from shared.tasks import TaskSpecError, load_spec, parse_spec, spec_from_json
from shared.tasks.checks import check_files
from shared.tasks.registry import canonical_json

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "label": {"enum": ["yes", "no", "unsure"]},
        "escalate": {"type": "boolean"},
    },
    "required": ["label", "escalate"],
    "additionalProperties": False,
}


def minimal_spec(**overrides: object) -> dict:
    spec = {
        "name": "yes-no",
        "instructions": 'Answer {"label": "yes"|"no"|"unsure", "escalate": bool}.',
        "output_schema": SCHEMA,
        "use_cases": [{"name": "plain", "weight": 1.0}, {"name": "tricky", "weight": 0.5}],
        "negatives": {"share": 0.2, "expected": {"label": "unsure", "escalate": True}},
        "golden_set": "golden.jsonl",
        "teacher": {"base_url": "http://127.0.0.1:8000/v1", "model": "teacher"},
        "student": {"base_model": "tiny"},
        "residency": {"allowed_teacher_hosts": ["127.0.0.1"]},
    }
    spec.update(overrides)
    return spec


def golden_row(i: int, label: str = "yes", *, use_case: str = "plain", negative: bool = False):
    output = json.dumps({"label": label, "escalate": negative})
    return {
        "id": f"g{i}",
        "input": f"question {i}?",
        "output": output,
        "use_case": use_case,
        "negative": negative,
    }


def write_pack(root: Path, spec: dict, rows: list[dict] | None = None, raw: str | None = None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    if raw is None:
        rows = rows if rows is not None else [golden_row(1), golden_row(2, "no")]
        raw = "".join(json.dumps(r) + "\n" for r in rows)
    (root / "golden.jsonl").write_text(raw)
    return root / "spec.yaml"


def problems(spec: dict) -> list[str]:
    with pytest.raises(TaskSpecError) as info:
        parse_spec(spec)
    return info.value.problems


def file_problems(path: Path) -> list[str]:
    with pytest.raises(TaskSpecError) as info:
        check_files(load_spec(path), path)
    return info.value.problems


# --- the spec itself --------------------------------------------------------------------------


def test_a_minimal_spec_is_valid_and_fills_defaults():
    spec = parse_spec(minimal_spec())
    assert spec.slices == ["plain", "tricky", "negative"]
    assert spec.thresholds.max_iterations == 3 and spec.quantization == ["int8"]


def test_gates_fail_closed_by_default():
    thresholds = parse_spec(minimal_spec()).thresholds
    assert thresholds.min_teacher_quality == 0.5
    assert thresholds.require_general_regression is True


def test_a_teacher_minimum_of_zero_is_refused():
    # A teacher that scores 0 must always end the cycle; the setting cannot allow it.
    spec = minimal_spec(thresholds={"min_teacher_quality": 0})
    assert problems(spec) == ["thresholds.min_teacher_quality: Input should be greater than 0"]


def test_a_task_without_general_data_can_opt_out_explicitly():
    spec = parse_spec(minimal_spec(thresholds={"require_general_regression": False}))
    assert spec.thresholds.require_general_regression is False


def test_quality_is_exact_row_and_latency_is_gated_by_default():
    thresholds = parse_spec(minimal_spec()).thresholds
    assert thresholds.primary_metric == "exact_row" and thresholds.primary_field is None
    assert thresholds.p95_latency_ms == 2000.0
    assert thresholds.max_latency_vs_teacher is None and thresholds.max_cost_vs_teacher is None


@pytest.mark.parametrize(
    ("metric", "field"),
    [("exact_row", None), ("mean_field_accuracy", None), ("label_accuracy", "label")],
)
def test_the_primary_metric_is_a_row_metric_or_one_fields_accuracy(metric, field):
    thresholds = parse_spec(minimal_spec(thresholds={"primary_metric": metric})).thresholds
    assert thresholds.primary_metric == metric and thresholds.primary_field == field


@pytest.mark.parametrize("metric", ["f1", "_accuracy", "accuracy"])
def test_an_unknown_primary_metric_is_refused(metric):
    assert problems(minimal_spec(thresholds={"primary_metric": metric})) == [
        f"thresholds.primary_metric: {metric!r} is not exact_row, mean_field_accuracy or "
        "<field>_accuracy"
    ]


def test_latency_may_be_gated_relative_to_the_teacher_alone():
    relative = {"p95_latency_ms": None, "max_latency_vs_teacher": 1.0, "max_cost_vs_teacher": 0.5}
    thresholds = parse_spec(minimal_spec(thresholds=relative)).thresholds
    assert thresholds.p95_latency_ms is None and thresholds.max_latency_vs_teacher == 1.0


def test_a_task_without_any_latency_gate_is_refused():
    assert problems(minimal_spec(thresholds={"p95_latency_ms": None})) == [
        "thresholds: set p95_latency_ms or max_latency_vs_teacher (or both): latency must be gated"
    ]


@pytest.mark.parametrize("name", ["max_latency_vs_teacher", "max_cost_vs_teacher"])
def test_a_relative_budget_must_be_positive(name):
    assert problems(minimal_spec(thresholds={name: 0})) == [
        f"thresholds.{name}: Input should be greater than 0"
    ]


def test_wrong_type_names_the_nested_field():
    bad = minimal_spec(training={"trials": "many"})
    assert problems(bad) == [
        "training.trials: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_missing_field_is_named():
    spec = minimal_spec()
    del spec["teacher"]
    assert problems(spec) == ["teacher: Field required"]


def test_bad_enum_names_the_list_item():
    assert problems(minimal_spec(quantization=["int8", "int9"])) == [
        "quantization.1: Input should be 'int8', 'int4', 'fp8' or 'gguf'"
    ]


def test_teacher_outside_residency_is_refused_naming_the_url():
    bad = minimal_spec(teacher={"base_url": "https://api.example.com/v1", "model": "big"})
    assert problems(bad) == [
        "teacher.base_url: host 'api.example.com' is outside "
        "residency.allowed_teacher_hosts ['127.0.0.1']"
    ]


def test_a_typo_is_an_unknown_field_not_a_silent_default():
    spec = minimal_spec()
    spec["thresholds"] = {"min_quality_vs_teachr": 0.9}
    assert problems(spec) == ["thresholds.min_quality_vs_teachr: Extra inputs are not permitted"]


def test_a_path_field_of_the_wrong_type_reads_as_a_path_problem():
    # `golden_set` is `ArtifactRef | str`; the union's type names must not leak into the path.
    assert problems(minimal_spec(golden_set=5)) == ["golden_set: Input should be a valid string"]


def test_every_problem_is_reported_at_once():
    bad = minimal_spec(name="Not A Name", use_cases=[], rollout={"ab_share": 2})
    found = problems(bad)
    assert [p.split(":")[0] for p in found] == ["name", "rollout.ab_share", "use_cases"]


def test_seed_example_with_unknown_use_case_is_named():
    bad = minimal_spec(seed_examples=[{"input": "q", "output": "{}", "use_case": "nope"}])
    assert problems(bad) == ["seed_examples.0.use_case: 'nope' is not one of ['plain', 'tricky']"]


def test_an_invalid_output_schema_is_refused():
    found = problems(minimal_spec(output_schema={"type": "objekt"}))
    assert len(found) == 1 and found[0].startswith("output_schema: not a valid JSON schema")


def test_output_schema_may_name_a_json_file_next_to_the_spec(tmp_path):
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    path = write_pack(tmp_path, minimal_spec(output_schema="schema.json"))
    assert load_spec(path).output_schema == SCHEMA

    missing = write_pack(tmp_path / "b", minimal_spec(output_schema="nope.json"))
    with pytest.raises(TaskSpecError) as info:
        load_spec(missing)
    [problem] = info.value.problems
    assert problem.startswith("output_schema: file ") and "nope.json not found" in problem


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: x\nuse_cases: [\n")
    with pytest.raises(TaskSpecError) as info:
        load_spec(path)
    assert info.value.problems[0].startswith("line 3, column 1: not valid YAML")


# --- the files it names -----------------------------------------------------------------------


def test_golden_row_invalid_against_the_schema_is_named_by_file_and_line(tmp_path):
    rows = [golden_row(1), golden_row(2), golden_row(3)]
    rows[1]["output"] = json.dumps({"label": "maybe", "escalate": False})
    rows[2]["output"] = json.dumps({"label": "no", "escalate": False, "why": "x"})
    path = write_pack(tmp_path, minimal_spec(), rows)
    assert file_problems(path) == [
        "golden_set: golden.jsonl:2: output.label: 'maybe' is not one of ['yes', 'no', 'unsure']",
        "golden_set: golden.jsonl:3: output: Additional properties are not allowed "
        "('why' was unexpected)",
    ]


def test_golden_rows_with_broken_structure_are_each_named(tmp_path):
    good = json.dumps(golden_row(1))
    missing = json.dumps({"id": "g2", "input": "q"})
    wrong_type = json.dumps({**golden_row(3), "negative": "no"})
    other_case = json.dumps(golden_row(4, use_case="elsewhere"))
    repeat = json.dumps({**golden_row(5), "id": "g1"})
    not_json_output = json.dumps({**golden_row(6), "output": "yes"})
    raw = "\n".join(
        [good, "{oops", missing, wrong_type, "", other_case, repeat, not_json_output, "[1]"]
    )
    found = file_problems(write_pack(tmp_path, minimal_spec(), raw=raw + "\n"))
    assert found[0].startswith("golden_set: golden.jsonl:2: not valid JSON")
    assert found[1:] == [
        "golden_set: golden.jsonl:3: missing output, use_case, negative",
        "golden_set: golden.jsonl:4: negative must be true or false",
        "golden_set: golden.jsonl:6: use_case 'elsewhere' is not one of ['plain', 'tricky']",
        "golden_set: golden.jsonl:7: id 'g1' repeats line 1",
        "golden_set: golden.jsonl:8: output is not JSON (Expecting value: line 1 column 1 "
        "(char 0))",
        "golden_set: golden.jsonl:9: expected a JSON object",
    ]


def test_a_negative_row_must_look_like_the_expected_refusal(tmp_path):
    rows = [golden_row(1), {**golden_row(2, "no"), "negative": True}]
    found = file_problems(write_pack(tmp_path, minimal_spec(), rows))
    assert found == [
        "golden_set: golden.jsonl:2: a negative row's output must match negatives.expected "
        "{'label': 'unsure', 'escalate': True}"
    ]


def test_missing_files_are_named_by_field(tmp_path):
    path = write_pack(tmp_path, minimal_spec(probe_set="probe.jsonl", general_text="prose.txt"))
    (tmp_path / "golden.jsonl").unlink()
    found = file_problems(path)
    assert [p.split(" (looked")[0] for p in found] == [
        "golden_set: file golden.jsonl not found",
        "probe_set: file probe.jsonl not found",
        "general_text: file prose.txt not found",
    ]


def test_probe_rows_and_general_text_are_checked(tmp_path):
    path = write_pack(tmp_path, minimal_spec(probe_set="probe.jsonl", general_text="prose.txt"))
    probe = {"id": "p1", "kind": "arithmetic", "prompt": "2+2?", "answer": "4"}
    (tmp_path / "probe.jsonl").write_text(
        json.dumps(probe) + "\n" + json.dumps({**probe, "id": "p2", "answer": ""}) + "\n"
    )
    (tmp_path / "prose.txt").write_text("  \n")
    assert file_problems(path) == [
        "probe_set: probe.jsonl:2: answer must be a non-empty string",
        "general_text: prose.txt is empty",
    ]


def test_unreadable_files_are_problems_not_tracebacks(tmp_path):
    with pytest.raises(TaskSpecError) as info:
        load_spec(tmp_path)  # a folder
    assert info.value.problems[0].startswith("cannot read the file: ")

    path = write_pack(tmp_path, minimal_spec(general_text="prose.txt"))
    (tmp_path / "golden.jsonl").write_bytes(b"\xff\xfe" + json.dumps(golden_row(1)).encode())
    (tmp_path / "prose.txt").write_bytes(b"caf\xe9\n")
    assert file_problems(path) == [
        "golden_set: golden.jsonl is not UTF-8 text (invalid start byte at byte 0)",
        "general_text: prose.txt is not UTF-8 text (invalid continuation byte at byte 3)",
    ]


def test_an_empty_golden_set_is_refused(tmp_path):
    assert file_problems(write_pack(tmp_path, minimal_spec(), raw="\n")) == [
        "golden_set: golden.jsonl has no rows"
    ]


def test_very_many_problems_are_capped(tmp_path):
    found = file_problems(write_pack(tmp_path, minimal_spec(), raw="x\n" * 30))
    assert len(found) == 21 and found[-1] == "... and 10 more problem(s)"


def test_a_valid_pack_counts_its_rows(tmp_path):
    rows = [golden_row(i, "yes" if i % 2 else "no") for i in range(1, 8)]
    rows.append(golden_row(8, "unsure", use_case="tricky", negative=True))
    path = write_pack(tmp_path, minimal_spec(), rows)
    files = check_files(load_spec(path), path)
    assert files.golden_rows == 8 and files.probe is None and files.general is None


# --- the stored form --------------------------------------------------------------------------


def test_canonical_json_is_stable_and_reads_back_as_the_same_spec():
    spec = parse_spec(minimal_spec(seed_examples=[{"input": "q", "output": "{}"}]))
    again = parse_spec(dict(reversed(list(minimal_spec(seed_examples=[
        {"output": "{}", "input": "q"}
    ]).items()))))  # fmt: skip
    data = canonical_json(spec)
    assert data == canonical_json(again)
    assert spec_from_json(data) == spec
    assert json.loads(data) == spec.model_dump(mode="json")


def test_show_prints_yaml_that_reads_back_as_the_stored_spec():
    spec = parse_spec(minimal_spec(description="line one\nline two"))
    data = spec.model_dump(mode="json")
    text = to_yaml(data)
    assert "description: |-\n  line one\n  line two\n" in text
    assert yaml.safe_load(text) == data


PACK = Path(__file__).resolve().parents[2] / "tasks" / "ticket-triage"


def test_the_student_prompt_is_one_short_line_naming_the_task_and_its_keys():
    spec = load_spec(PACK / "spec.yaml")
    prompt = spec.student_prompt
    assert "\n" not in prompt and len(prompt) < len(spec.instructions) / 10
    assert spec.name in prompt
    for key in spec.output_schema["properties"]:
        assert key in prompt


def test_a_stated_student_prompt_wins():
    data = minimal_spec(student={"base_model": "tiny", "prompt": "Say yes or no as JSON."})
    assert parse_spec(data).student_prompt == "Say yes or no as JSON."
    assert "label, escalate" in parse_spec(minimal_spec()).student_prompt


@pytest.mark.parametrize("listed", ["LOCALHOST.", "localhost:8000", "127.0.0.1"])
def test_the_spec_allow_list_compares_normalised_hosts(listed: str):
    teacher = {"base_url": "http://localhost:8000/v1", "model": "teacher"}
    if listed == "127.0.0.1":
        with pytest.raises(TaskSpecError, match="outside residency"):
            parse_spec(minimal_spec(teacher=teacher, residency={"allowed_teacher_hosts": [listed]}))
        return
    spec = parse_spec(minimal_spec(teacher=teacher, residency={"allowed_teacher_hosts": [listed]}))
    assert spec.teacher.host == "localhost"


def test_the_output_keys_keep_the_authors_order_after_the_spec_is_stored():
    spec = load_spec(PACK / "spec.yaml")
    stored = spec_from_json(canonical_json(spec))
    assert stored.output_keys == spec.output_keys == list(spec.output_schema["required"])
    assert stored.student_prompt == spec.student_prompt


def test_answers_are_put_in_the_one_key_order_with_the_grammars_separators():
    spec = load_spec(PACK / "spec.yaml")
    compact = '{"language":"de","needs_human":false,"product":"pos","priority":"low",'
    compact += '"category":"technical"}'
    assert spec.ordered_answer(compact) == (
        '{"category": "technical", "priority": "low", "product": "pos", '
        '"needs_human": false, "language": "de"}'
    )
    assert spec.ordered_answer("not json") == "not json"
