"""Scoring: JSON and schema validity, per-field match, refusals, slices, probes, regression."""

from __future__ import annotations

import json
import math

import pytest

from evaluator.confusions import FieldConfusion, error_patterns
from evaluator.data import DataError, GoldenRow, ProbeRow, parse_jsonl
from evaluator.general import PROBE_POWER, ProbePairs, general_regression, probe_pairs
from evaluator.metrics import (
    judge_agreement,
    parse_reply,
    percentile,
    primary,
    probe_accuracy,
    probe_correct,
    score_example,
    task_metrics,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "team": {"type": "string"},
        "priority": {"enum": ["low", "high", "escalate"]},
    },
    "required": ["team", "priority"],
    "additionalProperties": False,
}
REFUSAL = {"priority": "escalate"}


def row(i: str, output: str, use_case: str = "it", negative: bool = False) -> GoldenRow:
    return GoldenRow(id=i, input=f"in {i}", output=output, use_case=use_case, negative=negative)


ROWS = [
    row("a", '{"team": "it", "priority": "low"}'),
    row("b", '{"team": "it", "priority": "high"}'),
    row("c", '{"team": "billing", "priority": "low"}', use_case="billing"),
    row("d", '{"team": "none", "priority": "escalate"}', use_case="billing", negative=True),
]


def test_parse_reply_accepts_one_fenced_document_and_nothing_else():
    assert parse_reply(' {"a": 1} ') == (True, {"a": 1})
    assert parse_reply('```json\n{"a": 1}\n```') == (True, {"a": 1})
    assert parse_reply('{"a": 1} and some chatter') == (False, None)
    assert parse_reply("") == (False, None)


def test_fields_match_after_trimming_and_case_folding():
    score = score_example(
        '{"team": " IT ", "priority": "high"}', ROWS[0], schema=SCHEMA, refusal=REFUSAL
    )
    assert score.json_valid and score.schema_valid
    assert score.fields == {"team": True, "priority": False}
    assert not score.correct
    assert score.refused is None and score.slice == "it"


def test_schema_violation_is_reported_separately_from_json_validity():
    score = score_example(
        '{"team": "it", "priority": "urgent"}', ROWS[0], schema=SCHEMA, refusal=REFUSAL
    )
    assert score.json_valid and score.schema_valid is False


def test_negative_refused_when_expected_fields_match_even_if_other_fields_differ():
    score = score_example(
        '{"team": "billing", "priority": "escalate"}', ROWS[3], schema=SCHEMA, refusal=REFUSAL
    )
    assert score.slice == "negative"
    assert score.refused is True
    assert score.correct is False  # the golden team is "none"


def test_without_a_refusal_rule_the_golden_output_decides():
    score = score_example(ROWS[3].output, ROWS[3], schema=None, refusal={})
    assert score.refused is True and score.schema_valid is None


def test_plain_text_task_compares_normalised_text():
    plain = row("p", "Paris.")
    assert score_example("  paris ", plain, schema=None, refusal={}).correct
    assert not score_example("London", plain, schema=None, refusal={}).correct


def test_task_metrics_overall_and_per_slice():
    replies = {
        "a": '{"team": "it", "priority": "low"}',
        "b": "not json",
        "c": '{"team": "billing", "priority": "low"}',
        "d": '{"team": "none", "priority": "escalate"}',
    }
    m = task_metrics(replies, ROWS, schema=SCHEMA, refusal=REFUSAL)
    assert m.overall.n == 4
    assert m.overall.accuracy == 0.75
    assert m.overall.json_validity == 0.75
    assert m.overall.schema_validity == 0.75
    assert m.overall.field_match == {"priority": 0.75, "team": 0.75}
    assert m.overall.refusal == 1.0
    assert set(m.slices) == {"it", "billing", "negative"}
    assert m.slices["it"].accuracy == 0.5
    assert m.slices["billing"].accuracy == 1.0
    assert m.slices["negative"].refusal == 1.0
    assert m.slices["it"].refusal is None


def test_primary_metric_is_read_off_any_summary():
    replies = {
        "a": '{"team": "it", "priority": "high"}',
        "b": '{"team": "it", "priority": "high"}',
        "c": '{"team": "it", "priority": "low"}',
        "d": '{"team": "none", "priority": "escalate"}',
    }
    m = task_metrics(replies, ROWS, schema=SCHEMA, refusal=REFUSAL)
    # Two rows fully right; team right on 3 of 4, priority on 3 of 4.
    assert primary(m.overall, "exact_row") == 0.5
    assert primary(m.overall, "mean_field_accuracy") == 0.75
    assert primary(m.overall, "priority_accuracy") == 0.75
    assert primary(m.slices["billing"], "team_accuracy") == 0.0
    assert primary(m.overall.as_dict(), "mean_field_accuracy") == 0.75, "the report's dict too"
    assert primary(m.overall, "colour_accuracy") is None, "no such field: not measured"
    plain = task_metrics({"p": "Paris"}, [row("p", "Paris")], schema=None, refusal={})
    assert primary(plain.overall, "exact_row") == 1.0
    assert primary(plain.overall, "mean_field_accuracy") is None


def test_a_missing_reply_counts_as_wrong():
    m = task_metrics({}, ROWS, schema=SCHEMA, refusal=REFUSAL)
    assert m.overall.accuracy == 0.0 and m.overall.json_validity == 0.0


def test_probe_answer_must_appear_on_word_boundaries():
    assert probe_correct("The capital is Paris!", "paris")
    assert probe_correct("It is 1,024 bytes", "1 024")
    assert not probe_correct("Parisian food", "Paris")
    assert not probe_correct("anything", "")
    probes = [
        ProbeRow(id="1", kind="fact", prompt="?", answer="Paris"),
        ProbeRow(id="2", kind="math", prompt="?", answer="4"),
    ]
    assert probe_accuracy({"1": "Paris", "2": "five"}, probes) == 0.5
    assert probe_accuracy({}, []) is None


def test_general_regression_takes_the_worst_gated_drop():
    lost_all = ProbePairs(base_right=8, lost=8, won=0)  # p = 1/256: beyond chance
    reg = general_regression(probes=lost_all, candidate_ppl=math.e**2.2, base_ppl=math.e**2.0)
    assert reg["probe"] == pytest.approx(1.0)
    assert reg["probe_p_value"] == pytest.approx(1 / 256)
    assert reg["probe_gated"] == pytest.approx(1.0)
    assert reg["perplexity"] == pytest.approx(0.1)
    assert reg["worst"] == pytest.approx(1.0)
    improved = general_regression(
        probes=ProbePairs(base_right=8, lost=0, won=1), candidate_ppl=None, base_ppl=None
    )
    assert improved["worst"] == pytest.approx(-0.125)
    nothing = general_regression(
        probes=ProbePairs(base_right=0, lost=0, won=0), candidate_ppl=None, base_ppl=None
    )
    assert nothing["probe"] is None and nothing["worst"] is None


def test_one_probe_lost_of_seventeen_is_chance_not_a_regression():
    """The default demo's case: 17 probes right before, 16 after, perplexity held."""
    reg = general_regression(
        probes=ProbePairs(base_right=17, lost=1, won=0), candidate_ppl=100.4, base_ppl=100.0
    )
    assert reg["probe"] == pytest.approx(1 / 17)
    assert reg["probe_p_value"] == pytest.approx(0.5)
    assert reg["probe_gated"] == 0.0
    assert reg["worst"] == pytest.approx(reg["perplexity"])
    assert reg["worst"] < 0.01
    # Six lost and none won is beyond chance (p = 1/64) and is gated as the drop it is.
    real = general_regression(
        probes=ProbePairs(base_right=17, lost=6, won=0), candidate_ppl=100.4, base_ppl=100.0
    )
    assert real["worst"] == pytest.approx(6 / 17)


def test_a_base_that_answers_too_few_probes_leaves_them_ungated():
    # Losing all 3 is p = 1/8: no outcome of 3 probes is beyond chance, so they measure nothing.
    few = ProbePairs(base_right=3, lost=3, won=0)
    assert general_regression(probes=few, candidate_ppl=None, base_ppl=None)["worst"] is None
    with_text = general_regression(probes=few, candidate_ppl=math.e**2.1, base_ppl=math.e**2.0)
    assert with_text["probe_gated"] is None
    assert with_text["worst"] == pytest.approx(0.05)
    assert PROBE_POWER == 5


def test_probe_pairs_count_changes_per_probe():
    probes = [
        ProbeRow(id=str(i), kind="fact", prompt="?", answer=a)
        for i, a in enumerate(["Paris", "4", "blue"])
    ]
    base = {"0": "Paris", "1": "4", "2": "red"}
    candidate = {"0": "Paris", "1": "five", "2": "blue"}
    assert probe_pairs(base, candidate, probes) == ProbePairs(base_right=2, lost=1, won=1)
    assert probe_pairs(base, candidate, []) is None


def test_percentile_interpolates_like_numpy():
    assert percentile([], 95) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(range(1, 101), 95) == pytest.approx(95.05)


def test_judge_agreement_with_golden_labels():
    assert judge_agreement([True, True, False, False], [True, False, False, True]) == {
        "pass_rate": 0.5,
        "agreement": 0.5,
    }
    assert judge_agreement([], []) == {"pass_rate": None, "agreement": None}


def test_malformed_golden_set_is_a_permanent_error():
    good = b'{"id": "1", "input": "x", "output": "y", "use_case": "u", "negative": false}\n'
    assert parse_jsonl(good, GoldenRow, "golden")[0].use_case == "u"
    with pytest.raises(DataError, match="golden line 2"):
        parse_jsonl(good + b'{"id": "2"}\n', GoldenRow, "golden")
    with pytest.raises(DataError, match="not unique"):
        parse_jsonl(good + good, GoldenRow, "golden")
    with pytest.raises(DataError, match="empty"):
        parse_jsonl(b"\n", GoldenRow, "golden")


# -- error patterns ------------------------------------------------------------------------------

LABELLED = {
    "type": "object",
    "properties": {
        "team": {"enum": ["it", "billing", "none"]},
        "priority": {"enum": ["low", "high", "escalate"]},
        "urgent": {"type": "boolean"},
        "note": {"type": "string"},
    },
}


def labelled(i: str, team: str, priority: str, urgent: bool, note: str) -> GoldenRow:
    output = json.dumps({"team": team, "priority": priority, "urgent": urgent, "note": note})
    text = f"Ticket {i}: the printer on floor three is jammed again and nobody can print"
    return GoldenRow(id=i, input=text, output=output, use_case="it")


PATTERN_ROWS = [
    labelled("1", "it", "high", True, "printer on floor three is jammed"),
    labelled("2", "it", "high", True, "x"),
    labelled("3", "it", "low", False, "x"),
    labelled("4", "billing", "low", False, "x"),
]


def test_error_patterns_count_label_confusions_per_field():
    replies = {
        "1": '{"team": "billing", "priority": "LOW", "urgent": "true", "note": "y"}',
        "2": '{"team": "billing", "priority": "high", "urgent": true}',
        "3": "not json at all",
        "4": '{"team": "it", "priority": "low"}',
    }
    patterns = error_patterns(replies, PATTERN_ROWS, schema=LABELLED, top=5)
    assert patterns == [
        FieldConfusion("priority", "high", "low", 1),
        FieldConfusion("priority", "low", "<invalid>", 1),
        FieldConfusion("team", "it", "billing", 2),
        FieldConfusion("team", "billing", "it", 1),
        FieldConfusion("team", "it", "<invalid>", 1),
        FieldConfusion("urgent", "false", "<invalid>", 1),
        FieldConfusion("urgent", "false", "<missing>", 1),
        # The string "true" is not the boolean true: a type confusion, not a match.
        FieldConfusion("urgent", "true", "<other>", 1),
    ]
    assert not any(p.field == "note" for p in patterns), "free text is not a label"


def test_error_patterns_keep_the_most_frequent_per_field():
    replies = {"1": '{"team": "none"}', "2": '{"team": "none"}', "3": '{"team": "billing"}'}
    patterns = error_patterns(replies, PATTERN_ROWS, schema=LABELLED, top=1)
    assert [p for p in patterns if p.field == "team"] == [FieldConfusion("team", "it", "none", 2)]
    assert len({p.field for p in patterns}) == len(patterns)


def test_error_patterns_never_carry_input_text():
    # A student that copies the ticket into a field is named "<other>", not quoted.
    copied = json.dumps({"team": PATTERN_ROWS[0].input, "priority": "high", "urgent": True})
    patterns = error_patterns({"1": copied}, PATTERN_ROWS[:1], schema=LABELLED, top=5)
    assert patterns == [FieldConfusion("team", "it", "<other>", 1)]
    # Nor does a schema label that is itself 20 characters of an input.
    quoting = {"properties": {"team": {"enum": ["it", "printer on floor three is jammed"]}}}
    rows = [
        GoldenRow(
            id="q",
            input="the printer on floor three is jammed",
            output='{"team": "printer on floor three is jammed"}',
            use_case="it",
        )
    ]
    assert error_patterns({"q": '{"team": "it"}'}, rows, schema=quoting, top=5) == []


def test_without_a_schema_there_are_no_labels_to_confuse():
    assert error_patterns({}, PATTERN_ROWS, schema=None, top=5) == []
