"""Gates, verdict and what the cycle does next. Pure: numbers in, decisions out.

- quality_vs_teacher: the candidate's task accuracy >= min_quality_vs_teacher x the teacher's.
- general_regression: the worst relative drop in general capability against the base (probe
  accuracy, token cross-entropy on general text) <= max_general_regression.
- p95_latency_ms: the candidate's P95 latency <= the threshold.
- quant_retention (quantized variants): quality >= min_quant_retention x the unquantized
  student's quality.

A gate that could not be measured (no probe set and no general text, say) passes with value
None, and the report says it was not measured.

What a failed adapter leads to: more data can fix quality, so a failed quality gate asks for
another iteration focused on the failing slices, until the task's max_iterations; a candidate
that is good enough but too slow or that forgets general skills will not be fixed by more of
the same data, so the cycle fails with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shared.events.catalog import GateResult
from shared.tasks.spec import Thresholds

QUALITY = "quality_vs_teacher"
REGRESSION = "general_regression"
LATENCY = "p95_latency_ms"
RETENTION = "quant_retention"


def _at_least(name: str, value: float, threshold: float) -> GateResult:
    return GateResult(name=name, passed=value >= threshold, value=value, threshold=threshold)


def _at_most(name: str, value: float | None, threshold: float) -> GateResult:
    passed = value is None or value <= threshold
    return GateResult(name=name, passed=passed, value=value, threshold=threshold)


def adapter_gates(
    *,
    student_quality: float,
    teacher_quality: float,
    regression: float | None,
    p95_ms: float | None,
    thresholds: Thresholds,
) -> list[GateResult]:
    return [
        _at_least(QUALITY, student_quality, thresholds.min_quality_vs_teacher * teacher_quality),
        _at_most(REGRESSION, regression, thresholds.max_general_regression),
        _at_most(LATENCY, p95_ms, thresholds.p95_latency_ms),
    ]


def quant_gates(
    *, quality: float, source_quality: float, p95_ms: float | None, thresholds: Thresholds
) -> list[GateResult]:
    return [
        _at_least(RETENTION, quality, thresholds.min_quant_retention * source_quality),
        _at_most(LATENCY, p95_ms, thresholds.p95_latency_ms),
    ]


def retention(quality: float, source_quality: float) -> float:
    return quality / source_quality if source_quality > 0 else 1.0


def failing_slices(
    student: Mapping[str, float], teacher: Mapping[str, float], ratio: float
) -> list[str]:
    """Slices where the student is below `ratio` x the teacher on that same slice."""
    return sorted(s for s, acc in student.items() if acc < ratio * teacher.get(s, 0.0))


@dataclass(frozen=True)
class Decision:
    outcome: Literal["passed", "iterate", "failed"]
    failing_slices: list[str]
    reason: str | None = None


def decide(
    gates: list[GateResult],
    *,
    student: Mapping[str, float],
    teacher: Mapping[str, float],
    ratio: float,
    iteration: int,
    max_iterations: int,
) -> Decision:
    below = failing_slices(student, teacher, ratio)
    failed = [g for g in gates if not g.passed]
    if not failed:
        return Decision("passed", below)
    names = ", ".join(_describe(g) for g in failed)
    if all(g.name != QUALITY for g in failed):
        return Decision(
            "failed", below, f"gates failed: {names}; more data for the same slices cannot fix it"
        )
    # Overall quality can fail with no single slice under its own bar (the mix matters), so
    # focus on what trails the teacher at all, and failing that on everything.
    focus = (
        below
        or sorted(s for s, acc in student.items() if acc < teacher.get(s, 0.0))
        or sorted(student)
    )
    if iteration < max_iterations:
        return Decision("iterate", focus, f"gates failed: {names}")
    return Decision(
        "failed",
        focus,
        f"gates failed: {names} at iteration {iteration} of max_iterations {max_iterations}",
    )


def _describe(gate: GateResult) -> str:
    value = "unmeasured" if gate.value is None else f"{gate.value:.4g}"
    bound = "" if gate.threshold is None else f" (threshold {gate.threshold:.4g})"
    return f"{gate.name}={value}{bound}"


def quant_decision(gates: list[GateResult]) -> Decision:
    """A quantized variant that fails is not deployed; the unquantized adapter still stands."""
    failed = [g for g in gates if not g.passed]
    if not failed:
        return Decision("passed", [])
    return Decision("failed", [], "gates failed: " + ", ".join(_describe(g) for g in failed))
