"""Gates, verdict and what the cycle does next. Pure: numbers in, decisions out.

Quality is the task's primary metric (thresholds.primary_metric, exact_row by default) on the
golden set, for teacher and candidate alike. An adapter's gates (README, "Gates"):
teacher_quality, quality_vs_teacher and general_regression, what its weights decide. Its
latency and cost are measured and reported next to the teacher's, but the serving gates the
task sets (p95_latency_ms, latency_vs_teacher, cost_vs_teacher) are the quantizer's to apply,
on every form it makes of a passing adapter, each on the engine that would serve it: this
service can only time transformers, a form that on CPU decodes 5-8x slower than llama.cpp on
the same weights, so a gate here would refuse students the served form would pass. A task
that asks for no quantization (`quantization: []`) is served as the adapter the evaluator
timed: its adapter gets the serving gates here (candidate.py). A quantized variant evaluated
here (a transformers-format one) gets quant_retention and the
serving gates, since it is timed as it would serve. A budget left at None is no gate (its
figure is still reported); the spec refuses a task with no latency gate of either kind.

A gate that is set fails closed: a number that could not be measured (no latency sample; no
general-text perplexity and no probe set the base answers enough of to show a loss beyond
chance, general.general_regression; a reference that scored 0 or cost nothing, so
no ratio) fails it, and its reason says "not measured" and why, since a silent pass is what
lets a broken pipeline ship a broken model. The one opt-out is explicit:
thresholds.require_general_regression = false lets an unmeasured general_regression pass.

What a failed adapter leads to: a teacher too weak for the task ends the cycle, since more of
its data cannot fix it. More data can fix quality, so a failed quality gate alone asks for
another iteration focused on the failing slices, until the task's max_iterations. More task
data tends to cost general skills rather than restore them, so a failed general_regression
ends the cycle with the reason instead of spending iterations that cannot pass (so do latency
and cost where they are gated: the quantizer ends the cycle when no form passes them). An
unmeasured gate stays unmeasured on the next iteration, so it ends the cycle as well.
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
LATENCY_VS_TEACHER = "latency_vs_teacher"
COST_VS_TEACHER = "cost_vs_teacher"
RETENTION = "quant_retention"
PER_REQUEST = frozenset({"single", "concurrent"})
DATA_CANNOT_FIX = frozenset({REGRESSION, LATENCY, LATENCY_VS_TEACHER, COST_VS_TEACHER})


def replay_hint(share: float) -> str:
    # What fixed it for SmolLM2 (bench/README.md, learn.py): the base's own general answers
    # mixed into training kept 17 of its 17 right probes where task rows alone kept 1.
    if share <= 0:
        return (
            " (replaying the base model's own general answers keeps them: set the spec's "
            "training.replay.share, e.g. to 0.15)"
        )
    return (
        f" (training.replay.share {share:g} did not keep them: a larger share, or fewer "
        "training steps)"
    )


NOT_MEASURED = "not measured"
TEACHER_TOO_WEAK = "teacher too weak for this task"


def ratio_of(student: float | None, teacher: float | None) -> float | None:
    """student / teacher; None when either is unknown or the teacher's figure is not above 0."""
    if student is None or teacher is None or teacher <= 0:
        return None
    return student / teacher


@dataclass(frozen=True)
class Serving:
    """What one query costs with the candidate and with the teacher; None: not measured.

    `basis` names the candidate's timings: "concurrent" or "single" (the wait of one request,
    under load or alone) or "amortised" (a batch's wall time per item). The teacher's are
    waits of single requests, so an amortised figure has no ratio to them.
    """

    p95_ms: float | None
    basis: str
    teacher_p95_ms: float | None
    cost_usd: float | None
    teacher_cost_usd: float | None

    @property
    def latency_vs_teacher(self) -> float | None:
        if self.basis not in PER_REQUEST:
            return None
        return ratio_of(self.p95_ms, self.teacher_p95_ms)

    @property
    def cost_vs_teacher(self) -> float | None:
        return ratio_of(self.cost_usd, self.teacher_cost_usd)

    def latency_gap(self) -> str:
        """Why latency_vs_teacher is None."""
        if self.p95_ms is None:
            return "no latency samples of the candidate"
        if self.basis not in PER_REQUEST:
            return (
                f"the candidate's timings are {self.basis}, the teacher's are per request; "
                "the ratio needs per-request timings"
            )
        return "no latency of the teacher's to compare with"


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


def _no_metric(thresholds: Thresholds) -> str:
    return f"the golden outputs have no field for primary_metric {thresholds.primary_metric}"


def teacher_gate(teacher_quality: float | None, thresholds: Thresholds) -> GateResult:
    bar = thresholds.min_teacher_quality
    if teacher_quality is None:
        return _unmeasured(TEACHER, None, bar, why=_no_metric(thresholds))
    # `> 0` as well: a teacher at 0 is no reference at all, whatever the task asks of it.
    if teacher_quality > 0 and teacher_quality >= bar:
        return GateResult(name=TEACHER, passed=True, value=teacher_quality, threshold=bar)
    return GateResult(
        name=TEACHER, passed=False, value=teacher_quality, threshold=bar, reason=TEACHER_TOO_WEAK
    )


def serving_gates(serving: Serving, thresholds: Thresholds) -> list[GateResult]:
    """The latency and cost gates the task sets; at least one latency gate (the spec says so)."""
    gates = []
    if thresholds.p95_latency_ms is not None:
        gates.append(
            _at_most(LATENCY, serving.p95_ms, thresholds.p95_latency_ms, why="no latency samples")
        )
    if thresholds.max_latency_vs_teacher is not None:
        gates.append(
            _at_most(
                LATENCY_VS_TEACHER,
                serving.latency_vs_teacher,
                thresholds.max_latency_vs_teacher,
                why=serving.latency_gap(),
            )
        )
    if thresholds.max_cost_vs_teacher is not None:
        why = (
            "no cost of the candidate"
            if serving.cost_usd is None
            else "the teacher's cost per query is 0 (the spec's prices), so there is no ratio"
        )
        gates.append(
            _at_most(
                COST_VS_TEACHER, serving.cost_vs_teacher, thresholds.max_cost_vs_teacher, why=why
            )
        )
    return gates


def adapter_gates(
    *,
    student_quality: float | None,
    teacher_quality: float | None,
    regression: float | None,
    thresholds: Thresholds,
) -> list[GateResult]:
    """What the adapter's weights decide; its serving figures are gated by the quantizer."""
    if student_quality is None:
        quality = _unmeasured(QUALITY, None, None, why=_no_metric(thresholds))
    elif teacher_quality is not None and teacher_quality > 0:
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
            why="no general-text perplexity, and no probe set the base answers enough of "
            "for a loss to show beyond chance",
            required=thresholds.require_general_regression,
        ),
    ]


def quant_gates(
    *, quality: float | None, source_quality: float, serving: Serving, thresholds: Thresholds
) -> list[GateResult]:
    if quality is None:
        kept = _unmeasured(RETENTION, None, None, why=_no_metric(thresholds))
    elif source_quality > 0:
        kept = _at_least(RETENTION, quality, thresholds.min_quant_retention * source_quality)
    else:
        kept = _unmeasured(
            RETENTION,
            quality,
            None,
            why="the source adapter scored 0, so there is nothing to retain",
        )
    return [kept, *serving_gates(serving, thresholds)]


def retention(quality: float | None, source_quality: float) -> float | None:
    """Share of the source's quality the variant keeps; None when the source scored 0."""
    return ratio_of(quality, source_quality)


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
    replay_share: float = 0.0,
) -> Decision:
    failed = [g for g in gates if not g.passed]
    weak = [g for g in failed if g.name == TEACHER and not not_measured(g)]
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
    stuck = [g.name for g in failed if g.name in DATA_CANNOT_FIX]
    if stuck:
        hint = replay_hint(replay_share) if REGRESSION in stuck else ""
        return Decision(
            "failed",
            below,
            f"gates failed: {names}; more training data cannot fix {', '.join(stuck)}{hint}",
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
