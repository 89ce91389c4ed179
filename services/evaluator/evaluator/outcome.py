"""From a decision to what gets committed: the stored report, the events and the verdict row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from shared.artifacts import AsyncArtifactStore
from shared.events import Event
from shared.events.base import ArtifactRef
from shared.events.catalog import (
    Confusion,
    CycleFailed,
    CycleIterationRequested,
    EvaluationCompleted,
    GateResult,
    QuantFormat,
)

from .assemble import COST_NOTE, LATENCY_NOTE
from .domain import Decision
from .inputs import Inputs
from .report import FORMAT, store_report
from .settings import NAME


@dataclass
class Outcome:
    """What one evaluation commits with the claim: its row and the events it causes."""

    row: dict[str, Any]
    events: list[Event] = field(default_factory=list)


@dataclass
class Verdict:
    """Everything decided about one candidate, ready to be reported and published."""

    source: Event
    task_name: str
    task_version: int
    task_spec: ArtifactRef
    iteration: int
    candidate: ArtifactRef
    kind: Literal["adapter", "quantized"]
    quant_format: QuantFormat | None
    gates: list[GateResult]
    decision: Decision
    quality: float
    sections: dict[str, dict[str, Any]]
    metrics: dict[str, float]
    # Labels only (confusions.py): they leave with cycle.iteration.requested.
    error_patterns: list[Confusion] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


async def conclude(
    artifacts: AsyncArtifactStore, compute_hour_usd: float, inputs: Inputs, v: Verdict
) -> Outcome:
    """Store the report, then build the events and the row (recorded by the stage).

    The report is content-addressed, so a redelivery before the commit stores the same refs.
    A decision of "failed" is an answer, not a give-up: the cycle ends with the verdict.
    """
    passed = v.decision.outcome == "passed"
    report = {
        "format": FORMAT,
        "evaluation_id": str(inputs.evaluation_id),
        "cycle_id": str(v.source.cycle_id),
        "task_name": v.task_name,
        "task_version": v.task_version,
        "iteration": v.iteration,
        "candidate": {
            "kind": v.kind,
            "ref": v.candidate.model_dump(mode="json"),
            "quant_format": v.quant_format,
        },
        "golden_set": {"sha256": inputs.golden_ref.sha256, "examples": len(inputs.rows)},
        "passed": passed,
        "outcome": v.decision.outcome,
        "reason": v.decision.reason,
        "gates": [g.model_dump(mode="json") for g in v.gates],
        "failing_slices": v.decision.failing_slices,
        "error_patterns": [c.model_dump(mode="json") for c in v.error_patterns],
        "models": v.sections,
        "latency_note": LATENCY_NOTE,
        "cost": {
            "per_query_usd": {k: s["cost_per_query_usd"] for k, s in v.sections.items()},
            "compute_hour_usd": compute_hour_usd,
            "note": COST_NOTE,
        },
        **v.extra,
    }
    report_ref = await store_report(artifacts, report)
    completed = v.source.caused(
        EvaluationCompleted,
        producer=NAME,
        evaluation_id=inputs.evaluation_id,
        task_name=v.task_name,
        task_version=v.task_version,
        task_spec=v.task_spec,
        iteration=v.iteration,
        candidate=v.candidate,
        candidate_kind=v.kind,
        quant_format=v.quant_format,
        passed=passed,
        gates=v.gates,
        metrics=v.metrics,
        failing_slices=v.decision.failing_slices,
        report=report_ref,
    )
    events: list[Event] = [completed]
    if v.decision.outcome == "iterate":
        events.append(
            completed.caused(
                CycleIterationRequested,
                producer=NAME,
                task_name=v.task_name,
                task_version=v.task_version,
                task_spec=v.task_spec,
                iteration=v.iteration + 1,
                failing_slices=v.decision.failing_slices,
                error_patterns=v.error_patterns,
                evaluation_report=report_ref,
            )
        )
    elif v.decision.outcome == "failed" and v.kind == "adapter":
        events.append(
            completed.caused(
                CycleFailed,
                producer=NAME,
                task_name=v.task_name,
                stage="evaluation",
                reason=v.decision.reason or "evaluation failed",
            )
        )
    row = {
        "evaluation_id": str(inputs.evaluation_id),
        "source_event_id": str(v.source.event_id),
        "cycle_id": str(v.source.cycle_id) if v.source.cycle_id else None,
        "task_name": v.task_name,
        "task_version": v.task_version,
        "iteration": v.iteration,
        "candidate_sha256": v.candidate.sha256,
        "candidate_kind": v.kind,
        "quant_format": v.quant_format,
        "golden_sha256": inputs.golden_ref.sha256,
        "passed": passed,
        "outcome": v.decision.outcome,
        "quality": v.quality,
        "metrics": v.metrics,
        "failing_slices": v.decision.failing_slices,
        "report": report_ref.model_dump(mode="json"),
    }
    return Outcome(row, events)
