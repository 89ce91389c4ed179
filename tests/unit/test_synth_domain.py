"""synth-data's pure decisions: the plan, residency, output checks, votes, hashes, bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from shared.tasks import parse_spec
from shared.tasks.spec import Teacher
from synth_data import domain, prompts
from synth_data.domain import Planned
from tests.fixtures.teacher_server import TOY_SCHEMA, toy_spec

URL = "http://127.0.0.1:9/v1"


def spec(**sections):
    return parse_spec(toy_spec(URL, **sections))


def test_allocate_follows_weights_and_sums_to_n():
    assert domain.allocate(10, {"a": 2, "b": 1, "c": 1}) == {"a": 5, "b": 3, "c": 2}
    assert domain.allocate(7, {"x": 1, "y": 1}) == {"x": 4, "y": 3}  # ties go by name
    assert sum(domain.allocate(1001, {"a": 0.3, "b": 0.3, "c": 0.4}).values()) == 1001


def test_plan_splits_by_weight_with_negatives_styles_and_edge_cases():
    task = spec(synthesis={"examples": 100, "styles": ["terse", "chatty", "formal"]})
    plan = domain.plan_batch(task, domain.focus(task), edge_case_share=0.2)

    assert [p.index for p in plan] == list(range(100))
    assert Counter(p.slice for p in plan) == {
        "negative": 20,
        "billing": 40,
        "outage": 20,
        "account": 20,
    }
    for name in ("billing", "outage", "account", "negative"):
        styles = Counter(p.style for p in plan if p.slice == name)
        assert max(styles.values()) - min(styles.values()) <= 1, (name, styles)
    edges = [p for p in plan if p.edge_case]
    assert len(edges) == 16  # every 5th positive
    assert not any(p.negative for p in edges)
    assert Counter(p.edge_case for p in edges) == {e: 8 for e in task.edge_cases}
    assert {p.use_case for p in plan if p.negative} == {"billing", "outage", "account"}
    # Interleaved: the first tenth of the batch already holds every slice.
    assert {p.slice for p in plan[:10]} == {"billing", "outage", "account", "negative"}
    assert plan == domain.plan_batch(task, domain.focus(task), edge_case_share=0.2)


def test_plan_without_negatives_or_edge_cases():
    task = spec(negatives={"share": 0.0}, edge_cases=[], synthesis={"examples": 9})
    plan = domain.plan_batch(task, domain.focus(task), edge_case_share=0.5)
    assert len(plan) == 9
    assert not any(p.negative or p.edge_case for p in plan)


@pytest.mark.parametrize(
    ("failing", "use_cases", "negatives", "fallback"),
    [
        (None, ("billing", "outage", "account"), True, False),
        (["outage"], ("outage",), False, False),
        (["outage", "negative"], ("outage",), True, False),
        (["negative"], (), True, False),
        (["nonsense"], ("billing", "outage", "account"), True, True),
    ],
)
def test_focus_on_failing_slices(failing, use_cases, negatives, fallback):
    scope = domain.focus(spec(), failing)
    assert (scope.use_cases, scope.negatives, scope.fallback) == (use_cases, negatives, fallback)


def test_iteration_plan_covers_only_the_failing_slices():
    task = spec(synthesis={"examples": 20})
    only_outage = domain.plan_batch(task, domain.focus(task, ["outage"]), edge_case_share=0.2)
    assert {p.slice for p in only_outage} == {"outage"} and len(only_outage) == 20
    negatives = domain.plan_batch(task, domain.focus(task, ["negative"]), edge_case_share=0.2)
    assert all(p.negative for p in negatives) and len(negatives) == 20
    both = domain.plan_batch(task, domain.focus(task, ["account", "negative"]), edge_case_share=0)
    assert Counter(p.slice for p in both) == {"account": 16, "negative": 4}


CONFUSIONS = [
    ("urgent", "true", "false", 5),  # not a use case, not the decline label: any use case
    ("label", "outage", "billing", 3),  # a use case's own label: that use case's inputs
    ("label", "unknown", "account", 2),  # the decline label: negatives
    ("label", "outage", "billing", 1),  # the same confusion again: merged (3 + 1)
    ("colour", "red", "blue", 9),  # not a field of the output: nothing to aim at
    ("label", "billing", "billing", 4),  # not a confusion
]


def test_error_patterns_become_aims_on_their_own_labels():
    task = spec(synthesis={"examples": 40})
    scope = domain.focus(task, ["outage", "negative"], CONFUSIONS)
    assert scope.aims == (
        domain.Aim("urgent", "true", "false", 5),
        domain.Aim("label", "outage", "billing", 4, use_case="outage"),
        domain.Aim("label", "unknown", "account", 2, negative=True),
    )
    plan = domain.plan_batch(task, scope, edge_case_share=0.2)
    assert len(plan) == 40 and [p.index for p in plan] == list(range(40))
    aimed = [p for p in plan if p.aim]
    # Half the batch, split by count (5 : 4 : 2 of 20); the other half as without aims.
    assert Counter((p.aim.field, p.aim.expected) for p in aimed) == {
        ("urgent", "true"): 9,
        ("label", "outage"): 7,
        ("label", "unknown"): 4,
    }
    assert all(p.use_case == "outage" and not p.negative for p in aimed if p.aim.use_case)
    assert all(p.negative for p in aimed if p.aim.expected == "unknown")
    assert not any(p.edge_case for p in aimed)
    rest = [p for p in plan if not p.aim]
    assert Counter(p.slice for p in rest) == {"outage": 16, "negative": 4}
    assert {p.aim is not None for p in plan[:6]} == {True, False}  # interleaved
    assert plan == domain.plan_batch(task, scope, edge_case_share=0.2)
    # Without patterns the plan is exactly what it was.
    plain = domain.plan_batch(task, domain.focus(task, ["outage", "negative"]), edge_case_share=0.2)
    assert not any(p.aim for p in plain) and Counter(p.slice for p in plain) == {
        "outage": 32,
        "negative": 8,
    }


def test_aims_keep_the_most_frequent_confusions_in_a_stable_order():
    many = [("label", "billing", f"x{i}", i + 1) for i in range(12)]
    aims = domain.aims_for(spec(), reversed(many))
    assert len(aims) == domain.MAX_AIMS
    assert [a.got for a in aims] == [f"x{i}" for i in range(11, 3, -1)]
    assert domain.aims_for(spec(), []) == ()


def test_an_aimed_input_prompt_asks_to_separate_the_two_labels():
    task = spec()
    aim = domain.Aim("priority", "high", "medium", 4)
    user = prompts.input_messages(task, Planned(0, "billing", "terse", False, aim=aim))[1]
    [line] = [x for x in user["content"].splitlines() if x.startswith("Aim: ")]
    assert "distinguishes priority: high from priority: medium" in line
    assert "Use case: billing (charges and invoices)" in user["content"]
    invalid = domain.Aim("priority", "high", domain.INVALID, 2)
    user = prompts.input_messages(task, Planned(0, "billing", "terse", False, aim=invalid))[1]
    assert "Aim: an input whose right answer has priority: high;" in user["content"]
    assert domain.INVALID not in user["content"]
    # The production call is the same for an aimed example: the task's instructions, verbatim.
    assert prompts.answer_messages(task, "t")[0] == {"role": "system", "content": task.instructions}


def test_residency_names_the_host_and_the_allow_list():
    teacher = Teacher(base_url="https://api.example.com/v1", model="m")
    assert domain.residency_violation(teacher, ["API.example.com"], []) is None
    reason = domain.residency_violation(teacher, ["llm.eu.internal"], [])
    assert "'api.example.com'" in reason and "['llm.eu.internal']" in reason
    narrowed = domain.residency_violation(teacher, ["api.example.com"], ["llm.eu.internal"])
    assert "SYNTH_DATA_ALLOWED_TEACHER_HOSTS" in narrowed and "api.example.com" in narrowed


@pytest.mark.parametrize(
    "text",
    [
        '{"label": "billing", "urgent": true}',
        '```json\n{"label": "billing", "urgent": true}\n```',
        'Here you go: {"label": "billing", "urgent": true} Hope it helps.',
    ],
)
def test_valid_outputs_are_normalised(text):
    checked = prompts.check_output(text, TOY_SCHEMA)
    assert checked.error is None
    assert checked.output == '{"label": "billing", "urgent": true}'
    assert checked.vote == '{"label":"billing","urgent":true}'


def test_invalid_outputs_say_why():
    not_json = prompts.check_output("\n\n\n", TOY_SCHEMA)
    assert not_json.output is None and not_json.error.startswith("not JSON")
    wrong = prompts.check_output('{"label": "refund", "urgent": "yes"}', TOY_SCHEMA)
    assert wrong.error.startswith("schema: $.label: 'refund' is not one of")
    assert "(and 1 more)" in wrong.error
    missing = prompts.check_output('{"label": "billing"}', TOY_SCHEMA)
    assert missing.error == "schema: $: 'urgent' is a required property"
    assert prompts.check_output("  free text  ", None).output == "free text"
    assert prompts.check_output("   ", None).error.startswith("empty")


def test_majority_needs_more_than_half():
    assert domain.majority(["a", "a", "b"]) == 0
    assert domain.majority(["b", "a", "a"]) == 1
    assert domain.majority(["a", "a", None]) == 0
    assert domain.majority(["a", "b", "c"]) is None
    assert domain.majority(["a", None, None]) is None
    assert domain.majority(["a", "a", "b", "b"]) is None
    assert domain.majority([None]) is None


def test_request_key_is_canonical_and_covers_everything_that_shapes_the_answer():
    messages = [{"role": "user", "content": "hi"}]
    key = domain.request_key("m", messages, {"temperature": 0.0, "max_tokens": 8}, 0)
    assert key == domain.request_key("m", messages, {"max_tokens": 8, "temperature": 0.0}, 0)
    others = {
        domain.request_key("m", messages, {"temperature": 0.0, "max_tokens": 8}, 1),
        domain.request_key("m2", messages, {"temperature": 0.0, "max_tokens": 8}, 0),
        domain.request_key("m", messages, {"temperature": 0.7, "max_tokens": 8}, 0),
        domain.request_key("m", [{"role": "user", "content": "hi!"}], {}, 0),
    }
    assert key not in others and len(others) == 4


def test_batch_rows_have_the_shared_format_and_deterministic_bytes():
    planned = Planned(3, "billing", "terse", negative=False, edge_case="x")
    row = domain.batch_row(planned, 2, "ticket", '{"a": 1}', (10, 4))
    assert row == {
        "id": domain.example_id("ticket"),
        "use_case": "billing",
        "style": "terse",
        "negative": False,
        "edge_case": "x",
        "aim": None,
        "iteration": 2,
        "input": "ticket",
        "output": '{"a": 1}',
        "prompt_tokens": 10,
        "completion_tokens": 4,
    }
    shuffled = dict(reversed(list(row.items())))
    assert domain.to_jsonl([row]) == domain.to_jsonl([shuffled])
    assert json.loads(domain.to_jsonl([row, row]).splitlines()[1]) == row
    assert domain.per_slice([row, {**row, "negative": True}]) == {"billing": 1, "negative": 1}
    aimed = Planned(4, "billing", "terse", negative=False, aim=domain.Aim("label", "a", "b", 3))
    assert domain.batch_row(aimed, 2, "t", "{}", (1, 1))["aim"] == {
        "field": "label",
        "expected": "a",
        "got": "b",
    }


def test_small_helpers():
    teacher = Teacher(
        base_url=URL, model="m", price_per_1k_prompt_tokens=2.5, price_per_1k_completion_tokens=10
    )
    assert domain.cost_usd(teacher, 1000, 500) == 7.5
    assert domain.declines('{"label": "unknown", "urgent": false}', {"label": "unknown"})
    assert not domain.declines('{"label": "billing"}', {"label": "unknown"})
    assert not domain.declines("nope", {"label": "unknown"})
    assert domain.declines("anything", {})
    assert prompts.clean_input('  "quoted ticket"  ') == "quoted ticket"
    assert prompts.clean_input("```\nfenced ticket\n```") == "fenced ticket"
    assert domain.acceptance_problem(5, 10, 0.0, {}) is None
    assert "no example passed" in domain.acceptance_problem(0, 4, 0.0, {"schema": 4})
    assert "only 1 of 10" in domain.acceptance_problem(1, 10, 0.5, {"schema": 9})


def test_prompts_ask_for_the_planned_example_and_replay_the_production_call():
    task = spec(seed_examples=[{"input": "Charged twice!", "output": "{}", "use_case": "billing"}])
    planned = Planned(0, "billing", "terse", negative=False, edge_case="all capitals")
    system, user = prompts.input_messages(task, planned)
    assert system == {"role": "system", "content": prompts.INPUT_SYSTEM}
    lines = user["content"].splitlines()
    assert "Use case: billing (charges and invoices)" in lines
    assert "Style: terse" in lines and "Edge case: all capitals" in lines
    assert "Charged twice!" in lines and not any(x.startswith("Kind:") for x in lines)
    negative = prompts.input_messages(task, Planned(1, "outage", "chatty", negative=True))
    assert "Kind: negative." in negative[1]["content"]

    call = prompts.answer_messages(task, "the ticket")
    assert call == [
        {"role": "system", "content": task.instructions},
        {"role": "user", "content": "the ticket"},
    ]
    repair = prompts.repair_messages(task, call, "oops", "not JSON: ...")
    assert repair[:2] == call and repair[2] == {"role": "assistant", "content": "oops"}
    assert "not JSON: ..." in repair[3]["content"] and '"urgent"' in repair[3]["content"]


def test_domain_imports_no_framework():
    code = (
        "import sys, synth_data.domain; "
        "print([m for m in ('faststream', 'sqlalchemy', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_backoff_grows_is_capped_and_honours_retry_after():
    from synth_data.teacher import RetryPolicy

    policy = RetryPolicy(max_attempts=5, base_s=1.0, cap_s=4.0)
    assert 0.5 <= policy.delay(1, None) <= 1.0
    assert 1.0 <= policy.delay(2, None) <= 2.0
    assert 2.0 <= policy.delay(3, None) <= 4.0
    assert 2.0 <= policy.delay(9, None) <= 4.0
    assert policy.delay(1, 2.5) == 2.5
    assert policy.delay(1, 600.0) == 4.0
