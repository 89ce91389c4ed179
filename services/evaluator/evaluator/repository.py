"""Every query the evaluator makes on its tables (the teacher's request cache aside: teacher.py).

Verdict rows are written in the stage's transaction, with the claim and the events they
cause. Results-cache rows are written on their own, before the claim: a cache, not an effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from shared.db import Database, UnitOfWork
from shared.events.base import ArtifactRef

from .models import EvaluationRow, ResultRow


@dataclass(frozen=True)
class SourceVerdict:
    """This service's verdict on an unquantized adapter, which a quantized variant must keep."""

    evaluation_id: str
    iteration: int
    quality: float
    report: dict[str, Any]
    # Its flat metrics, the teacher's figures among them: a variant is gated against the same.
    metrics: dict[str, float] = field(default_factory=dict)


def add_evaluation(uow: UnitOfWork, row: dict[str, Any]) -> None:
    uow.session.add(EvaluationRow(**row, created_at=datetime.now(UTC)))


async def latest_adapter_verdict(
    db: Database, adapter_sha: str, golden_sha: str
) -> SourceVerdict | None:
    """The latest verdict on an unquantized adapter, on the same golden set."""
    async with db.uow() as uow:
        row = await uow.session.scalar(
            select(EvaluationRow)
            .where(
                EvaluationRow.candidate_sha256 == adapter_sha,
                EvaluationRow.candidate_kind == "adapter",
                EvaluationRow.golden_sha256 == golden_sha,
            )
            .order_by(EvaluationRow.id.desc())
            .limit(1)
        )
        if row is None:
            return None
        # Read inside the unit of work: its exit rolls back, which expires loaded rows.
        return SourceVerdict(
            row.evaluation_id, row.iteration, row.quality, row.report, dict(row.metrics or {})
        )


async def cached_results_ref(
    db: Database, model_key: str, golden: str, setup: str
) -> ArtifactRef | None:
    async with db.uow() as uow:
        row = await uow.session.scalar(
            select(ResultRow).where(
                ResultRow.model_key == model_key,
                ResultRow.golden_sha256 == golden,
                ResultRow.setup_sha256 == setup,
            )
        )
        return row.ref() if row is not None else None


async def remember_results(
    db: Database, model_key: str, golden: str, setup: str, role: str, ref: ArtifactRef
) -> None:
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    stmt = insert(ResultRow).values(
        model_key=model_key,
        golden_sha256=golden,
        setup_sha256=setup,
        role=role,
        created_at=datetime.now(UTC),
        **ref.model_dump(),
    )
    # Two evaluations may run the same base model at once; the second writer is harmless.
    async with db.uow() as uow:
        await uow.session.execute(stmt.on_conflict_do_nothing())
        await uow.commit()
