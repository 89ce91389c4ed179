"""Gates, verdict and what the cycle does next. Pure: numbers in, decisions out.

- teacher_quality: the teacher's task accuracy >= min_teacher_quality, and above 0 whatever
  the setting. Every other bar is drawn from the teacher, so a teacher that cannot do the task
  would lower the bar for the student with it; the cycle fails instead.
- quality_vs_teacher: the candidate's task accuracy >= min_quality_vs_teacher x the teacher's.
- general_regression: the worst relative drop in general capability against the base (probe
  accuracy, token cross-entropy on general text) <= max_general_regression.
- p95_latency_ms: the candidate's P95 latency <= the threshold.
- quant_retention (quantized variants): quality >= min_quant_retention x the unquantized
  student's quality.

Gates fail closed: a gate whose number could not be measured (no latency sample; no probe
accuracy and no general-text perplexity; a reference that scored 0, so no ratio) fails, and its
reason says "not measured" and why. A pass has to be earned by a measurement, since a silent
pass is what lets a broken pipeline ship a broken model. One exception is opt-in and
explicit: a task that sets thresholds.require_general_regression to false (it has no probe set
or general text and accepts the risk) lets an unmeasured general_regression pass, with the
reason "not measured; not required by the task". A measured regression is still held to its
bound.

What a failed adapter leads to: a teacher too weak for the task ends the cycle, since more of
its data cannot fix it. More data can fix quality, so a failed quality gate asks for another
iteration focused on the failing slices, until the task's max_iterations; a candidate that is
good enough but too slow or that forgets general skills will not be fixed by more of the same
data, and an unmeasured gate stays unmeasured on the next iteration, so these fail the cycle
with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shared.events.catalog import GateResult
from shared.tasks.spec import Thresholds

TEACHER = "teacher_quality"
QUALITY = "quality_vs_teacher"
REGRESSION = "general_regression"
LATENCY = "p95_latency_ms"
RETENTION = "quant_retention"

NOT_MEASURED = "not measured"
TEACHER_TOO_WEAK = "teacher too weak for this task"


def _at_least(name: str, value: float, threshold: float) -> GateResult:
    return GateResult(name=name, passed=value >= threshold, value=value, threshold=threshold)


def _at_most(
    name: str, value: float | None, threshold: float, *, why: str, required: bool = True
) -> GateResult:
    if value is None:
        return _unmeasured(name, None, threshold, why=why, required=required)
    return GateResult(name=name, passed=value <= threshold, value=value, threshold=threshold)


def _unmeasured(
    name: str, value: float | None, threshold: float | None, *, why: str, required: bool = True
) -> GateResult:
    reason = f"{NOT_MEASURED}: {why}" if required else f"{NOT_MEASURED}; not required by the task"
    return GateResult(
        name=name, passed=not required, value=value, threshold=threshold, reason=reason
    )


def not_measured(gate: GateResult) -> bool:
    """A gate that failed for want of a measurement rather than on its number."""
    return not gate.passed and (gate.reason or "").startswith(NOT_MEASURED)


def teacher_gate(teacher_quality: float, thresholds: Thresholds) -> GateResult:
    bar = thresholds.min_teacher_quality
    # `> 0` as well: a teacher at 0 is no reference at all, whatever the task asks of it.
    if teacher_quality > 0 and teacher_quality >= bar:
        return GateResult(name=TEACHER, passed=True, value=teacher_quality, threshold=bar)
    return GateResult(
        name=TEACHER, passed=False, value=teacher_quality, threshold=bar, reason=TEACHER_TOO_WEAK
    )


def adapter_gates(
    *,
    student_quality: float,
    teacher_quality: float,
    regression: float | None,
    p95_ms: float | None,
    thresholds: Thresholds,
) -> list[GateResult]:
    if teacher_quality > 0:
        quality = _at_least(
            QUALITY, student_quality, thresholds.min_quality_vs_teacher * teacher_quality
        )
    else:
        quality = _unmeasured(
            QUALITY, student_quality, None, why="the teacher scored 0, so there is no bar"
        )
    return [
        teacher_gate(teacher_quality, thresholds),
        quality,
        _at_most(
            REGRESSION,
            regression,
            thresholds.max_general_regression,
            why="no probe accuracy (needs a probe set the base scores above 0 on) and no "
            "general-text perplexity",
            required=thresholds.require_general_regression,
        ),
        _at_most(LATENCY, p95_ms, thresholds.p95_latency_ms, why="no latency samples"),
    ]


def quant_gates(
    *, quality: float, source_quality: float, p95_ms: float | None, thresholds: Thresholds
) -> list[GateResult]:
    if source_quality > 0:
        kept = _at_least(RETENTION, quality, thresholds.min_quant_retention * source_quality)
    else:
        kept = _unmeasured(
            RETENTION,
            quality,
            None,
            why="the source adapter scored 0, so there is nothing to retain",
        )
    return [kept, _at_most(LATENCY, p95_ms, thresholds.p95_latency_ms, why="no latency samples")]


def retention(quality: float, source_quality: float) -> float | None:
    """Share of the source's quality the variant keeps; None when the source scored 0."""
    return quality / source_quality if source_quality > 0 else None


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
    failed = [g for g in gates if not g.passed]
    weak = [g for g in failed if g.name == TEACHER]
    if weak:
        # Slices "below the teacher" mean nothing when the teacher is the problem.
        return Decision(
            "failed",
            [],
            f"{TEACHER_TOO_WEAK}: {_describe(weak[0])}; a better teacher is needed, more of "
            "its data cannot fix it",
        )
    below = failing_slices(student, teacher, ratio)
    if not failed:
        return Decision("passed", below)
    names = "; ".join(_describe(g) for g in failed)
    if any(not_measured(g) for g in failed):
        return Decision(
            "failed", below, f"gates failed: {names}; another iteration cannot measure it either"
        )
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
    value = "" if gate.value is None else f"={gate.value:.4g}"
    bound = "" if gate.threshold is None else f" (threshold {gate.threshold:.4g})"
    why = f": {gate.reason}" if gate.reason else ""
    return f"{gate.name}{value}{bound}{why}"


def quant_decision(gates: list[GateResult]) -> Decision:
    """A quantized variant that fails is not deployed; the unquantized adapter still stands."""
    failed = [g for g in gates if not g.passed]
    if not failed:
        return Decision("passed", [])
    return Decision("failed", [], "gates failed: " + "; ".join(_describe(g) for g in failed))
