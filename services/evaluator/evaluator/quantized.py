"""Use case: a quantized variant against the unquantized student it was made from.

The variant is evaluated as a full model directory on the same golden set; the student's
quality comes from this service's own verdict on the source adapter (evaluator_evaluations),
so the comparison uses the numbers that let the adapter through. Only transformers
safetensors models can be run here; any other format (GGUF, say) is refused by name and
dead-lettered. A failing variant is reported and not deployed; neither ends the cycle, since
the adapter and other variants may still ship.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.bus import Delivery, PermanentError
from shared.events.catalog import QuantizationCompleted

from . import domain
from .assemble import flat_metrics, latency_basis, local_cost, score, section
from .metrics import percentile
from .outcome import Outcome, Verdict, commit_plan
from .results import LocalModel

if TYPE_CHECKING:
    from .service import Evaluator, Inputs


async def evaluate(
    ev: Evaluator, event: QuantizationCompleted, inputs: Inputs, delivery: Delivery
) -> Outcome:
    spec = inputs.spec
    manifest = await ev.reader.manifest(event.model, "quantized model")
    files = set(manifest.get("files", {}))
    if (
        manifest.get("kind", "model") != "model"
        or "config.json" not in files
        or not any(f.endswith(".safetensors") for f in files)
    ):
        raise PermanentError(
            f"quantized model {event.model.sha256[:12]} ({event.quant_format}) is not a "
            "transformers safetensors model; this evaluator cannot run it"
        )
    source = await ev.source_evaluation(event.source_adapter.sha256, inputs.golden_ref.sha256)
    if source is None:
        raise PermanentError(
            f"no evaluation of source adapter {event.source_adapter.sha256[:12]} on golden set "
            f"{inputs.golden_ref.sha256[:12]}; cannot measure quality retention"
        )
    variant = LocalModel(key=event.model.sha256, model=event.model)
    local, cached = await ev.local_results(inputs, [variant], delivery)
    result = local[variant.key]
    metrics = score(result, inputs.rows, spec)
    sections = {
        "candidate": section(
            result,
            metrics,
            cached=variant.key in cached,
            cost=local_cost(result, ev.settings.compute_hour_usd),
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
    verdict = Verdict(
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
    return await commit_plan(ev, inputs, verdict)
