"""From the worker's measurements to the answer: store, score, judge, choose, report.

Runs in the service process after the worker: artifacts are stored (merged model as a
safetensors manifest, each GGUF as one file carrying its tokenizer and chat template), replies
are scored on the golden set, and every variant is judged against the merged model.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.artifacts import AsyncArtifactStore
from shared.events.base import ArtifactRef
from shared.events.quantization import VariantReport
from shared.models import store_model_dir

from . import domain, golden
from .contract import Measured, QuantizeResult
from .settings import QuantizerSettings

if TYPE_CHECKING:
    from .service import Job

GGUF_MEDIA_TYPE = "application/vnd.gguf"


@dataclass(frozen=True)
class Outcome:
    merged_model: ArtifactRef
    # None: no form passes the task's serving gates, and the cycle ends with the reason.
    chosen: VariantReport | None
    reason: str
    variants: list[VariantReport]
    report: ArtifactRef

    def fields(self) -> dict[str, Any]:
        assert self.chosen is not None and self.chosen.artifact is not None
        return {
            "merged_model": self.merged_model,
            "chosen": self.chosen.name,
            "chosen_engine": self.chosen.engine,
            "chosen_model": self.chosen.artifact,
            "reason": self.reason,
            "variants": self.variants,
            "report": self.report,
        }


async def conclude(
    artifacts: AsyncArtifactStore, settings: QuantizerSettings, job: Job, result: QuantizeResult
) -> Outcome:
    spec = job.spec
    plans = {p.name: p for p in job.plan}
    merged_ref = await asyncio.to_thread(
        store_model_dir,
        artifacts.sync,
        Path(result.merged_dir),
        f"{spec.name}-merged",
        extra={"adapter": job.event.candidate.sha256, "base_model": job.base.sha256},
    )
    scores: dict[str, dict[str, float | None]] = {}
    reports = []
    for m in result.variants:
        engine, method = ("transformers", "peft merge_and_unload, fp32")
        if m.name in plans:
            engine, method = plans[m.name].engine, plans[m.name].method
        ref = None
        if m.status == "evaluated":
            ref = merged_ref if m.name == domain.MERGED else await _store_file(artifacts, m)
            scores[m.name] = golden.score(
                m.replies, job.rows, spec.thresholds.primary_metric, spec.output_schema
            )
        q = scores.get(m.name, {})
        reports.append(
            VariantReport(
                name=m.name,
                engine=engine,
                method=method,
                status=m.status,
                reason=m.reason,
                artifact=ref,
                size_bytes=m.size_bytes,
                quality=q.get("quality"),
                schema_validity=q.get("schema_validity"),
                p50_ms=m.figures.get("p50_ms"),
                p95_ms=m.figures.get("p95_ms"),
                decode_tokens_per_s=m.figures.get("decode_tokens_per_s"),
            )
        )
    merged_q = scores.get(domain.MERGED, {}).get("quality")
    figures = {m.name: m.figures for m in result.variants}
    budget = domain.Budget.of(spec.thresholds, job.event.metrics)
    judged = [
        domain.judged(
            v,
            merged_q,
            floor=spec.thresholds.min_quant_retention,
            budget=budget,
            cost_hour_usd=settings.compute_hour_usd,
            seconds_per_query=figures[v.name].get("seconds_per_query"),
        )
        for v in reports
    ]
    name, reason = domain.choose(judged)
    chosen = next((v for v in judged if v.name == name), None)
    report = {
        "adapter": job.event.candidate.model_dump(mode="json"),
        "base_model": job.base.model_dump(mode="json"),
        "merged_model": merged_ref.model_dump(mode="json"),
        "merge_max_abs_diff": result.merge_max_abs_diff,
        "primary_metric": spec.thresholds.primary_metric,
        "retention_floor": spec.thresholds.min_quant_retention,
        "serving_budget": vars(budget),
        "chosen": name,
        "reason": reason,
        "variants": [v.model_dump(mode="json") for v in judged],
        "scores": scores,
        # Every variant's reply per golden row: the deployer replays rows through the served
        # variant and must get these back (serving parity) before it takes traffic.
        "replies": {m.name: m.replies for m in result.variants if m.status == "evaluated"},
        "max_new_tokens": settings.max_new_tokens,
        "figures": figures,
        "runtime": result.runtime,
    }
    body = json.dumps(report, sort_keys=True, indent=1).encode()
    report_ref = await artifacts.put_bytes(body, media_type="application/json")
    return Outcome(merged_ref, chosen, reason, judged, report_ref)


async def _store_file(artifacts: AsyncArtifactStore, m: Measured) -> ArtifactRef:
    assert m.path is not None
    return await artifacts.put_file(Path(m.path), media_type=GGUF_MEDIA_TYPE)
