"""Gates, failing slices and what the cycle does next, without any model or broker."""

from __future__ import annotations

import pytest

from evaluator import domain
from shared.tasks.spec import Thresholds

T = Thresholds(
    min_quality_vs_teacher=0.85,
    min_teacher_quality=0.5,
    max_general_regression=0.05,
    p95_latency_ms=500.0,
    max_iterations=3,
    min_quant_retention=0.95,
)


def serving(p95=100.0, teacher_p95=1000.0, cost=0.001, teacher_cost=0.01, basis="single"):
    return domain.Serving(
        p95_ms=p95,
        basis=basis,
        teacher_p95_ms=teacher_p95,
        cost_usd=cost,
        teacher_cost_usd=teacher_cost,
    )


def gates(student=0.9, teacher=1.0, regression=0.0, thresholds=T):
    return domain.adapter_gates(
        student_quality=student,
        teacher_quality=teacher,
        regression=regression,
        thresholds=thresholds,
    )


def speed_gates(thresholds=T, **speed):
    """The serving gates, as a variant timed on its own engine gets them (quant_gates)."""
    return domain.serving_gates(serving(**speed), thresholds)


def by_name(results):
    return {g.name: g for g in results}


def test_all_gates_pass_at_their_thresholds():
    g = by_name(gates(student=0.85, regression=0.05) + speed_gates(p95=500.0))
    assert all(x.passed for x in g.values())
    assert g[domain.QUALITY].threshold == pytest.approx(0.85)
    assert all(x.reason is None for x in g.values())


@pytest.mark.parametrize(
    ("kwargs", "failing"),
    [
        ({"student": 0.84}, domain.QUALITY),
        ({"regression": 0.06}, domain.REGRESSION),
        ({"teacher": 0.49, "student": 0.49}, domain.TEACHER),
    ],
)
def test_each_gate_fails_on_its_own(kwargs, failing):
    g = by_name(gates(**kwargs))
    assert [n for n, x in g.items() if not x.passed] == [failing]


def test_an_unmeasured_gate_fails_and_says_so():
    gate = domain.REGRESSION
    g = by_name(gates(regression=None))[gate]
    assert not g.passed and g.value is None
    assert g.reason is not None and g.reason.startswith("not measured")
    d = decide(gates(regression=None), 1, student={"it": 1.0}, teacher={"it": 1.0})
    assert d.outcome == "failed"
    assert f"{gate} (threshold" in (d.reason or "") and "not measured" in (d.reason or "")
    latency = by_name(speed_gates(p95=None))[domain.LATENCY]
    assert not latency.passed and (latency.reason or "").startswith("not measured")


def test_an_unmeasured_gate_ends_the_cycle_even_beside_a_quality_failure():
    # Iterating on data would come back just as unmeasured, so there is nothing to retry.
    d = decide(gates(student=0.5, regression=None), 1)
    assert d.outcome == "failed" and "another iteration cannot measure it" in (d.reason or "")


def test_a_task_may_opt_out_of_requiring_general_regression():
    lax = T.model_copy(update={"require_general_regression": False})
    g = by_name(gates(regression=None, thresholds=lax))[domain.REGRESSION]
    assert g.passed and g.value is None and g.reason == "not measured; not required by the task"
    # The opt-out is about a missing measurement, not the bound: a measured drop still counts.
    assert not by_name(gates(regression=0.2, thresholds=lax))[domain.REGRESSION].passed
    # Latency has no such opt-out.
    assert not by_name(speed_gates(p95=None, thresholds=lax))[domain.LATENCY].passed


@pytest.mark.parametrize("teacher", [0.0, 0.3])
def test_a_teacher_too_weak_for_the_task_ends_the_cycle(teacher):
    # A student at 0 would clear 0.85 x a teacher at 0: the bar must not fall with the teacher.
    results = gates(student=0.0, teacher=teacher)
    g = by_name(results)
    assert not g[domain.TEACHER].passed and g[domain.TEACHER].reason == domain.TEACHER_TOO_WEAK
    assert g[domain.TEACHER].threshold == 0.5
    d = decide(results, 1, student={"it": 0.0}, teacher={"it": teacher})
    assert d.outcome == "failed" and d.failing_slices == []
    assert (d.reason or "").startswith("teacher too weak for this task")
    assert d.outcome != "iterate", "more data from the same teacher cannot fix it"


def test_a_teacher_at_zero_fails_whatever_the_setting():
    lowest = T.model_copy(update={"min_teacher_quality": 1e-9})
    g = by_name(gates(student=0.0, teacher=0.0, thresholds=lowest))
    assert not g[domain.TEACHER].passed
    # Nor does the quality gate pretend there was a bar to clear.
    assert not g[domain.QUALITY].passed and g[domain.QUALITY].threshold is None
    assert (g[domain.QUALITY].reason or "").startswith("not measured")


def test_a_teacher_at_its_minimum_is_good_enough():
    g = by_name(gates(student=0.5, teacher=0.5))
    assert g[domain.TEACHER].passed and g[domain.QUALITY].passed


def test_failing_slices_are_relative_to_the_teacher_on_each_slice():
    student = {"it": 1.0, "billing": 0.0, "negative": 0.0}
    teacher = {"it": 1.0, "billing": 1.0, "negative": 0.0}
    assert domain.failing_slices(student, teacher, 0.85) == ["billing"]


def decide(gate_results, iteration, student=None, teacher=None):
    return domain.decide(
        gate_results,
        student=student or {"it": 1.0, "billing": 0.0},
        teacher=teacher or {"it": 1.0, "billing": 1.0},
        ratio=0.85,
        iteration=iteration,
        max_iterations=T.max_iterations,
    )


def test_pass_needs_no_follow_up():
    d = decide(gates(), 1, student={"it": 1.0}, teacher={"it": 1.0})
    assert d.outcome == "passed" and d.reason is None and d.failing_slices == []


def test_low_quality_iterates_on_the_failing_slices_until_the_maximum():
    low = gates(student=0.5)
    first = decide(low, 1)
    assert first.outcome == "iterate" and first.failing_slices == ["billing"]
    assert decide(low, 2).outcome == "iterate"
    last = decide(low, 3)
    assert last.outcome == "failed"
    assert "iteration 3 of max_iterations 3" in (last.reason or "")
    assert last.failing_slices == ["billing"]


def test_quality_failure_without_a_slice_under_its_bar_still_names_slices():
    # Each slice is within 85 % of the teacher, the overall quality is not.
    d = decide(
        gates(student=0.8),
        1,
        student={"it": 0.9, "billing": 0.9},
        teacher={"it": 1.0, "billing": 0.95},
    )
    assert d.outcome == "iterate" and d.failing_slices == ["billing", "it"]


RELATIVE = T.model_copy(
    update={"p95_latency_ms": None, "max_latency_vs_teacher": 1.0, "max_cost_vs_teacher": 0.5}
)
BOTH = RELATIVE.model_copy(update={"p95_latency_ms": 500.0})


@pytest.mark.parametrize("thresholds", [T, RELATIVE, BOTH])
def test_an_adapter_is_not_gated_on_latency_or_cost_here(thresholds):
    # Timed on transformers, the adapter is not in the form that serves: the quantizer gates
    # each form on its own engine (and ends the cycle when none passes).
    names = {g.name for g in gates(thresholds=thresholds)}
    assert names == {domain.TEACHER, domain.QUALITY, domain.REGRESSION}


def test_regression_beside_quality_ends_the_cycle():
    d = decide(gates(student=0.5, regression=0.2), 1)
    assert d.outcome == "failed"
    assert "more training data cannot fix general_regression" in (d.reason or "")
    assert "set the spec's training.replay.share, e.g. to 0.15" in (d.reason or "")


def test_a_regression_despite_replay_does_not_advise_the_share_already_set():
    d = domain.decide(
        gates(student=0.9, regression=0.3),
        student={"it": 1.0},
        teacher={"it": 1.0},
        ratio=0.85,
        iteration=1,
        max_iterations=T.max_iterations,
        replay_share=0.15,
    )
    assert d.outcome == "failed"
    assert "training.replay.share 0.15 did not keep them" in (d.reason or "")
    assert "e.g. to 0.15" not in (d.reason or "")


def test_relative_gates_are_student_over_teacher():
    g = by_name(
        speed_gates(thresholds=BOTH, p95=300.0, teacher_p95=600.0, cost=0.005, teacher_cost=0.01)
    )
    assert g[domain.LATENCY_VS_TEACHER].value == pytest.approx(0.5)
    assert g[domain.LATENCY_VS_TEACHER].threshold == 1.0
    assert g[domain.COST_VS_TEACHER].value == pytest.approx(0.5)
    assert g[domain.COST_VS_TEACHER].passed, "at the threshold passes"
    assert g[domain.LATENCY].value == 300.0 and g[domain.LATENCY].threshold == 500.0


def test_a_budget_left_unset_is_no_gate():
    assert domain.LATENCY not in by_name(speed_gates(thresholds=RELATIVE))
    only_absolute = by_name(speed_gates())
    assert domain.LATENCY_VS_TEACHER not in only_absolute
    assert domain.COST_VS_TEACHER not in only_absolute


@pytest.mark.parametrize(
    ("speed", "gate", "why"),
    [
        ({"p95": None}, domain.LATENCY_VS_TEACHER, "no latency samples of the candidate"),
        ({"teacher_p95": None}, domain.LATENCY_VS_TEACHER, "no latency of the teacher's"),
        ({"teacher_p95": 0.0}, domain.LATENCY_VS_TEACHER, "no latency of the teacher's"),
        ({"basis": "amortised"}, domain.LATENCY_VS_TEACHER, "needs per-request timings"),
        ({"teacher_cost": 0.0}, domain.COST_VS_TEACHER, "teacher's cost per query is 0"),
        ({"cost": None}, domain.COST_VS_TEACHER, "no cost of the candidate"),
    ],
)
def test_a_relative_gate_without_both_figures_fails_as_not_measured(speed, gate, why):
    results = speed_gates(thresholds=RELATIVE, **speed)
    g = by_name(results)[gate]
    assert not g.passed and g.value is None
    assert (g.reason or "").startswith("not measured") and why in (g.reason or "")
    assert domain.quant_decision(results).outcome == "failed"


def test_a_primary_metric_the_golden_set_lacks_fails_closed_without_blaming_the_teacher():
    results = gates(student=None, teacher=None)
    g = by_name(results)
    for name in (domain.TEACHER, domain.QUALITY):
        assert not g[name].passed and (g[name].reason or "").startswith("not measured")
        assert "primary_metric exact_row" in (g[name].reason or "")
    d = decide(results, 1)
    assert d.outcome == "failed" and "teacher too weak" not in (d.reason or "")
    assert "another iteration cannot measure it" in (d.reason or "")


def test_ratio_of_needs_a_teacher_figure_above_zero():
    assert domain.ratio_of(1.0, 4.0) == 0.25
    assert domain.ratio_of(1.0, 0.0) is None
    assert domain.ratio_of(None, 1.0) is None and domain.ratio_of(1.0, None) is None


def test_quantized_retention_gate():
    ok = domain.quant_gates(quality=0.95, source_quality=1.0, serving=serving(), thresholds=T)
    assert domain.quant_decision(ok).outcome == "passed"
    bad = domain.quant_gates(quality=0.9, source_quality=1.0, serving=serving(), thresholds=T)
    decision = domain.quant_decision(bad)
    assert decision.outcome == "failed" and "quant_retention" in (decision.reason or "")
    assert domain.retention(0.9, 1.0) == pytest.approx(0.9)


def test_retention_of_a_source_that_scored_zero_is_not_measured():
    # 0 of 0 is no evidence the variant kept anything; it must not read as full retention.
    assert domain.retention(0.0, 0.0) is None
    results = domain.quant_gates(quality=0.0, source_quality=0.0, serving=serving(), thresholds=T)
    [kept] = [g for g in results if g.name == domain.RETENTION]
    assert not kept.passed and (kept.reason or "").startswith("not measured")
    decision = domain.quant_decision(results)
    assert decision.outcome == "failed" and "not measured" in (decision.reason or "")


def test_a_variant_without_latency_samples_fails():
    results = domain.quant_gates(
        quality=1.0, source_quality=1.0, serving=serving(p95=None), thresholds=T
    )
    assert domain.quant_decision(results).outcome == "failed"
