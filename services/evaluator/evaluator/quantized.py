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
from .assemble import flat_metrics, latency_basis, local_cost, score, section
from .inputs import Inputs
from .metrics import percentile
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
    basis, latencies = latency_basis(result)
    quality = metrics.overall.accuracy
    gates = domain.quant_gates(
        quality=quality,
        source_quality=source.quality,
        p95_ms=percentile(latencies, 95),
        thresholds=spec.thresholds,
    )
    flat = flat_metrics(sections, "candidate")
    flat["quality.source"] = source.quality
    kept = domain.retention(quality, source.quality)
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
        quality=quality,
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
            "latency_basis": basis,
        },
    )
