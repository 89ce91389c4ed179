"""A trained LoRA adapter against its base model and the teacher: the checks and the verdict.

Pure: the service fetches the results (cache, worker, teacher) and hands them here. The
verdict's decision answers `training.completed` with `evaluation.completed`, plus
`cycle.iteration.requested` (quality short of the teacher, iterations left) or `cycle.failed`
(no fix by more data, or no iterations left).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.events.catalog import Confusion, TrainingCompleted

from . import domain
from .assemble import (
    flat_metrics,
    local_cost,
    quality,
    score,
    section,
    serving,
    slice_quality,
    teacher_cost,
    teacher_p95,
    vs_teacher,
    vs_teacher_metrics,
)
from .confusions import error_patterns
from .general import general_regression, probe_pairs
from .inputs import Inputs
from .metrics import judge_agreement, score_example
from .outcome import Verdict

# Enough for synth-data to aim at a field's main confusions; the full counts are in no event.
PATTERNS_PER_FIELD = 5
SERVING_GATES_NOTE = (
    "not applied to the adapter: the latency and cost here are transformers' on this "
    "machine; the task's serving gates are applied by the quantizer to every form it makes "
    "(GGUF on llama.cpp, vLLM-native on a GPU, the merged model on transformers), each timed "
    "on its own engine, and the cycle ends there when none passes"
)
ADAPTER_SERVES_NOTE = (
    "applied here: the task asks for no quantization (quantization: []), so the adapter is "
    "served as it was timed here"
)


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
        probes=probe_pairs(
            base.get("probe_replies", {}), candidate.get("probe_replies", {}), inputs.probes
        ),
        candidate_ppl=candidate.get("perplexity"),
        base_ppl=base.get("perplexity"),
    )
    metric = spec.thresholds.primary_metric
    student_q, teacher_q = (
        quality(metrics["candidate"], metric),
        quality(metrics["teacher"], metric),
    )
    speed = serving(
        candidate,
        compute_hour_usd,
        teacher_p95_ms=teacher_p95(teacher),
        teacher_cost_usd=sections["teacher"]["cost_per_query_usd"],
    )
    gates = domain.adapter_gates(
        student_quality=student_q,
        teacher_quality=teacher_q,
        regression=regression["worst"],
        thresholds=spec.thresholds,
    )
    if not spec.quantization:
        # No quantizer in this task's path: the deployer serves the adapter as timed here.
        gates += domain.serving_gates(speed, spec.thresholds)
    decision = domain.decide(
        gates,
        student=slice_quality(metrics["candidate"], metric),
        teacher=slice_quality(metrics["teacher"], metric),
        ratio=spec.thresholds.min_quality_vs_teacher,
        iteration=event.iteration,
        max_iterations=spec.thresholds.max_iterations,
        replay_share=spec.training.replay.share,
    )
    versus = vs_teacher(metric, student_q, teacher_q, speed)
    flat = flat_metrics(sections, "candidate", metric) | vs_teacher_metrics(versus)
    if regression["worst"] is not None:
        flat["general_regression"] = regression["worst"]
    if judge and judge["agreement"] is not None:
        flat["judge.pass_rate"] = judge["pass_rate"]
        flat["judge.agreement"] = judge["agreement"]
    patterns = error_patterns(
        candidate["replies"], inputs.rows, schema=spec.output_schema, top=PATTERNS_PER_FIELD
    )
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
        # The row's quality column is not nullable; an unmeasured one failed its gate anyway,
        # and a variant of it then has nothing to retain.
        quality=student_q or 0.0,
        sections=sections,
        metrics=flat,
        error_patterns=[Confusion(**vars(c)) for c in patterns],
        extra={
            "base_model": event.base_model.model_dump(mode="json"),
            "general_regression": regression,
            "latency_basis": speed.basis,
            "serving_gates": SERVING_GATES_NOTE if spec.quantization else ADAPTER_SERVES_NOTE,
            "vs_teacher": versus,
            "judge": judge,
        },
    )
