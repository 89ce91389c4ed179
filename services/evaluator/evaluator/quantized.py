"""A quantized variant against the unquantized student it was made from: checks and verdict.

The variant is evaluated as a full model directory on the same golden set; the student's
quality comes from this service's own verdict on the source adapter (evaluator_evaluations),
so the comparison uses the numbers that let the adapter through. Only transformers
safetensors models can be run here; any other format (GGUF, say) is refused by name and
dead-lettered. A failing variant is reported and not deployed; neither ends the cycle, since
the adapter and other variants may still ship. Pure: the service fetches the results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.events.catalog import QuantizationCompleted

from . import domain
from .assemble import (
    flat_metrics,
    local_cost,
    quality,
    score,
    section,
    serving,
    teacher_reference,
    vs_teacher,
    vs_teacher_metrics,
)
from .inputs import Inputs
from .outcome import Verdict
from .repository import SourceVerdict


def refusal(manifest: Mapping[str, Any], event: QuantizationCompleted) -> str | None:
    """Why this evaluator cannot run the variant, or None."""
    files = set(manifest.get("files", {}))
    if (
        manifest.get("kind", "model") != "model"
        or "config.json" not in files
        or not any(f.endswith(".safetensors") for f in files)
    ):
        return (
            f"quantized model {event.model.sha256[:12]} ({event.quant_format}) is not a "
            "transformers safetensors model; this evaluator cannot run it"
        )
    return None


def no_source(event: QuantizationCompleted, golden_sha: str) -> str:
    return (
        f"no evaluation of source adapter {event.source_adapter.sha256[:12]} on golden set "
        f"{golden_sha[:12]}; cannot measure quality retention"
    )


def verdict(
    event: QuantizationCompleted,
    inputs: Inputs,
    source: SourceVerdict,
    result: Mapping[str, Any],
    *,
    cached: bool,
    compute_hour_usd: float,
) -> Verdict:
    spec = inputs.spec
    metrics = score(result, inputs.rows, spec)
    sections = {
        "candidate": section(
            result,
            metrics,
            cached=cached,
            cost=local_cost(result, compute_hour_usd),
            probes=inputs.probes,
        )
    }
    metric = spec.thresholds.primary_metric
    value = quality(metrics, metric)
    # The teacher is not asked again: its figures are those the source adapter was judged on,
    # from that verdict's metrics. A verdict without them (none recorded) leaves a gate relative
    # to the teacher not measured: it fails rather than pass unseen.
    teacher = teacher_reference(source.metrics)
    speed = serving(
        result,
        compute_hour_usd,
        teacher_p95_ms=teacher["p95_ms"],
        teacher_cost_usd=teacher["cost_usd"],
    )
    gates = domain.quant_gates(
        quality=value, source_quality=source.quality, serving=speed, thresholds=spec.thresholds
    )
    versus = vs_teacher(metric, value, teacher["quality"], speed)
    flat = flat_metrics(sections, "candidate", metric) | vs_teacher_metrics(versus)
    flat["quality.source"] = source.quality
    kept = domain.retention(value, source.quality)
    if kept is not None:
        flat["quant_retention"] = kept
    return Verdict(
        source=event,
        task_name=event.task_name,
        task_version=event.task_version,
        task_spec=event.task_spec,
        iteration=source.iteration,
        candidate=event.model,
        kind="quantized",
        quant_format=event.quant_format,
        gates=gates,
        decision=domain.quant_decision(gates),
        quality=value or 0.0,
        sections=sections,
        metrics=flat,
        extra={
            "source_adapter": event.source_adapter.model_dump(mode="json"),
            "source_evaluation": {
                "evaluation_id": source.evaluation_id,
                "quality": source.quality,
                "report": source.report,
            },
            "retention": kept,
            "latency_basis": speed.basis,
            "vs_teacher": versus,
        },
    )
