"""A trained LoRA adapter against its base model and the teacher: the checks and the verdict.

Pure: the service fetches the results (cache, worker, teacher) and hands them here. The
verdict's decision answers `training.completed` with `evaluation.completed`, plus
`cycle.iteration.requested` (quality short of the teacher, iterations left) or `cycle.failed`
(no fix by more data, or no iterations left).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.events.catalog import TrainingCompleted

from . import domain
from .assemble import flat_metrics, latency_basis, local_cost, score, section, teacher_cost
from .inputs import Inputs
from .metrics import general_regression, judge_agreement, percentile, score_example
from .outcome import Verdict


def refusal(manifest: Mapping[str, Any], event: TrainingCompleted) -> str | None:
    """Why this artifact cannot be evaluated as the event's adapter, or None."""
    if manifest.get("kind") != "adapter":
        return f"adapter {event.adapter.uri} is a {manifest.get('kind')!r} manifest"
    if manifest.get("base_model") != event.base_model.sha256:
        return (
            f"adapter {event.adapter.sha256[:12]} was trained on base "
            f"{str(manifest.get('base_model'))[:12]}, not on {event.base_model.sha256[:12]}"
        )
    return None


def judge_summary(
    inputs: Inputs, replies: Mapping[str, str], verdicts: Sequence[bool]
) -> dict[str, float | None]:
    """The judge's pass rate, and how often it agrees with exact match on the golden labels."""
    spec = inputs.spec
    exact = [
        score_example(
            replies.get(r.id, ""), r, schema=spec.output_schema, refusal=spec.negatives.expected
        ).correct
        for r in inputs.rows
    ]
    return judge_agreement(verdicts, exact)


def verdict(
    event: TrainingCompleted,
    inputs: Inputs,
    *,
    teacher: Mapping[str, Any],
    base: Mapping[str, Any],
    candidate: Mapping[str, Any],
    cached: Mapping[str, bool],
    compute_hour_usd: float,
    judge: dict[str, float | None] | None,
) -> Verdict:
    """Scores, gates and decision; `cached` says, per role, whether its results were reused."""
    spec = inputs.spec
    metrics = {
        "teacher": score(teacher, inputs.rows, spec),
        "base": score(base, inputs.rows, spec),
        "candidate": score(candidate, inputs.rows, spec),
    }
    sections = {
        "teacher": section(
            teacher,
            metrics["teacher"],
            cached=cached["teacher"],
            cost=teacher_cost(teacher, spec),
        ),
        "base": section(
            base,
            metrics["base"],
            cached=cached["base"],
            cost=local_cost(base, compute_hour_usd),
            probes=inputs.probes,
        ),
        "candidate": section(
            candidate,
            metrics["candidate"],
            cached=cached["candidate"],
            cost=local_cost(candidate, compute_hour_usd),
            probes=inputs.probes,
        ),
    }
    regression = general_regression(
        candidate_probe=sections["candidate"]["general"]["probe_accuracy"],
        base_probe=sections["base"]["general"]["probe_accuracy"],
        candidate_ppl=candidate.get("perplexity"),
        base_ppl=base.get("perplexity"),
    )
    basis, latencies = latency_basis(candidate)
    gates = domain.adapter_gates(
        student_quality=metrics["candidate"].overall.accuracy,
        teacher_quality=metrics["teacher"].overall.accuracy,
        regression=regression["worst"],
        p95_ms=percentile(latencies, 95),
        thresholds=spec.thresholds,
    )
    decision = domain.decide(
        gates,
        student={k: v.accuracy for k, v in metrics["candidate"].slices.items()},
        teacher={k: v.accuracy for k, v in metrics["teacher"].slices.items()},
        ratio=spec.thresholds.min_quality_vs_teacher,
        iteration=event.iteration,
        max_iterations=spec.thresholds.max_iterations,
    )
    flat = flat_metrics(sections, "candidate")
    if regression["worst"] is not None:
        flat["general_regression"] = regression["worst"]
    if judge and judge["agreement"] is not None:
        flat["judge.pass_rate"] = judge["pass_rate"]
        flat["judge.agreement"] = judge["agreement"]
    return Verdict(
        source=event,
        task_name=event.task_name,
        task_version=event.task_version,
        task_spec=event.task_spec,
        iteration=event.iteration,
        candidate=event.adapter,
        kind="adapter",
        quant_format=None,
        gates=gates,
        decision=decision,
        quality=metrics["candidate"].overall.accuracy,
        sections=sections,
        metrics=flat,
        extra={
            "base_model": event.base_model.model_dump(mode="json"),
            "general_regression": regression,
            "latency_basis": basis,
            "judge": judge,
        },
    )
