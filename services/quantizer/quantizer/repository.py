"""Every query the quantizer makes on its tables; rows are written in the stage's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.db import UnitOfWork
from shared.events.base import ArtifactRef
from shared.events.catalog import EvaluationCompleted
from shared.events.quantization import VariantReport, VariantSelected

from .models import QuantizationRow, VariantRow

if TYPE_CHECKING:
    from .outcome import Outcome


async def add_choice(uow: UnitOfWork, answer: VariantSelected) -> None:
    run = QuantizationRow(
        source_event_id=str(answer.causation_id),
        cycle_id=str(answer.cycle_id),
        task_name=answer.task_name,
        task_version=answer.task_version,
        adapter_sha256=answer.source_adapter.sha256,
        status="chosen",
        chosen=answer.chosen,
        reason=answer.reason,
    )
    await _add_run(uow, run, answer.merged_model, answer.report, answer.variants)


async def add_rejection(uow: UnitOfWork, event: EvaluationCompleted, outcome: Outcome) -> None:
    """Every form measured and none passed the serving gates: the run, its variants, no choice."""
    run = _failed_run(event, outcome.reason)
    await _add_run(uow, run, outcome.merged_model, outcome.report, outcome.variants)


async def _add_run(
    uow: UnitOfWork,
    run: QuantizationRow,
    merged: ArtifactRef,
    report: ArtifactRef,
    variants: Sequence[VariantReport],
) -> None:
    run.merged_model = merged.model_dump(mode="json")
    run.report = report.model_dump(mode="json")
    run.created_at = datetime.now(UTC)
    uow.session.add(run)
    await uow.session.flush()
    uow.session.add_all(_variant_rows(run.id, variants))


def _variant_rows(run_id: int, variants: Sequence[VariantReport]) -> list[VariantRow]:
    return [
        VariantRow(
            run_id=run_id,
            name=v.name,
            engine=v.engine,
            status=v.status,
            reason=v.reason,
            artifact=v.artifact.model_dump(mode="json") if v.artifact else None,
            size_bytes=v.size_bytes,
            quality=v.quality,
            retention=v.retention,
            p95_ms=v.p95_ms,
            cost_per_query_usd=v.cost_per_query_usd,
            passed=v.passed,
        )
        for v in variants
    ]


async def add_failure(uow: UnitOfWork, event: EvaluationCompleted, reason: str) -> None:
    uow.session.add(_failed_run(event, reason))


def _failed_run(event: EvaluationCompleted, reason: str) -> QuantizationRow:
    return QuantizationRow(
        source_event_id=str(event.event_id),
        cycle_id=str(event.cycle_id),
        task_name=event.task_name,
        task_version=event.task_version,
        adapter_sha256=event.candidate.sha256,
        status="failed",
        reason=reason,
        created_at=datetime.now(UTC),
    )
