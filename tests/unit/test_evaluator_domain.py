"""Gates, failing slices and what the cycle does next, without any model or broker."""

from __future__ import annotations

import pytest

from evaluator import domain
from shared.tasks.spec import Thresholds

T = Thresholds(
    min_quality_vs_teacher=0.85,
    max_general_regression=0.05,
    p95_latency_ms=500.0,
    max_iterations=3,
    min_quant_retention=0.95,
)


def gates(student=0.9, teacher=1.0, regression=0.0, p95=100.0):
    return domain.adapter_gates(
        student_quality=student,
        teacher_quality=teacher,
        regression=regression,
        p95_ms=p95,
        thresholds=T,
    )


def by_name(results):
    return {g.name: g for g in results}


def test_all_gates_pass_at_their_thresholds():
    g = by_name(gates(student=0.85, regression=0.05, p95=500.0))
    assert all(x.passed for x in g.values())
    assert g[domain.QUALITY].threshold == pytest.approx(0.85)


@pytest.mark.parametrize(
    ("kwargs", "failing"),
    [
        ({"student": 0.84}, domain.QUALITY),
        ({"regression": 0.06}, domain.REGRESSION),
        ({"p95": 501.0}, domain.LATENCY),
    ],
)
def test_each_gate_fails_on_its_own(kwargs, failing):
    g = by_name(gates(**kwargs))
    assert [n for n, x in g.items() if not x.passed] == [failing]


def test_an_unmeasured_regression_passes_with_no_value():
    g = by_name(gates(regression=None))[domain.REGRESSION]
    assert g.passed and g.value is None


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


def test_latency_or_regression_failure_ends_the_cycle_without_iterating():
    d = decide(gates(p95=900.0), 1, student={"it": 1.0}, teacher={"it": 1.0})
    assert d.outcome == "failed"
    assert "p95_latency_ms=900" in (d.reason or "")
    assert "cannot fix" in (d.reason or "")


def test_quantized_retention_gate():
    ok = domain.quant_gates(quality=0.95, source_quality=1.0, p95_ms=10.0, thresholds=T)
    assert domain.quant_decision(ok).outcome == "passed"
    bad = domain.quant_gates(quality=0.9, source_quality=1.0, p95_ms=10.0, thresholds=T)
    decision = domain.quant_decision(bad)
    assert decision.outcome == "failed" and "quant_retention" in (decision.reason or "")
    assert domain.retention(0.9, 1.0) == pytest.approx(0.9)
    assert domain.retention(0.0, 0.0) == 1.0
