"""Queries and writes on the curation tables; every function works inside the caller's session."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.base import ArtifactRef, Event

from .decisions import ReviewDecision
from .domain import Rejection, Row
from .models import CurationDataset, CurationRejection, CurationReview, CurationRun

PENDING = "pending"
PENDING_REVIEW = "pending_review"
PUBLISHED = "published"
FAILED = "failed"


def now() -> datetime:
    return datetime.now(UTC)


async def add_run(
    session: AsyncSession,
    event: Event,
    kind: str,
    *,
    task_name: str,
    task_version: int,
    iteration: int,
    draft: ArtifactRef,
    state: str,
) -> CurationRun:
    run = CurationRun(
        source_event_id=str(event.event_id),
        source_kind=kind,
        source_event=event.model_dump_json(),
        cycle_id=str(event.cycle_id),
        task_name=task_name,
        task_version=task_version,
        iteration=iteration,
        state=state,
        draft_uri=draft.uri,
        draft_sha256=draft.sha256,
        draft_size_bytes=draft.size_bytes,
        created_at=now(),
        finished_at=None if state == PENDING_REVIEW else now(),
    )
    session.add(run)
    await session.flush()
    return run


async def add_rejections(
    session: AsyncSession, run_id: int, rejected: Sequence[Rejection], version: str | None
) -> None:
    session.add_all(
        CurationRejection(
            run_id=run_id,
            dataset_version=version,
            row_id=r.row_id[:100],
            use_case=r.use_case[:64],
            reason=r.reason,
            detail=r.detail,
        )
        for r in rejected
    )
    await session.flush()


async def add_reviews(session: AsyncSession, run_id: int, rows: Sequence[Row]) -> None:
    session.add_all(
        CurationReview(
            run_id=run_id,
            row_id=r.id,
            use_case=r.use_case[:64],
            negative=r.negative,
            input=r.input,
            output=r.output,
            status=PENDING,
        )
        for r in rows
    )
    await session.flush()


async def add_dataset(
    session: AsyncSession,
    run: CurationRun,
    manifest: ArtifactRef,
    train_examples: int,
    validation_examples: int,
) -> None:
    session.add(
        CurationDataset(
            run_id=run.id,
            dataset_version=manifest.sha256,
            cycle_id=run.cycle_id,
            task_name=run.task_name,
            task_version=run.task_version,
            iteration=run.iteration,
            manifest_uri=manifest.uri,
            manifest_size_bytes=manifest.size_bytes,
            train_examples=train_examples,
            validation_examples=validation_examples,
            published_at=now(),
        )
    )
    await session.execute(
        update(CurationRejection)
        .where(CurationRejection.run_id == run.id)
        .values(dataset_version=manifest.sha256)
    )
    await session.flush()


async def previous_dataset(
    session: AsyncSession, cycle_id: str, task_name: str, iteration: int
) -> CurationDataset | None:
    """The cycle's latest dataset for the task from an earlier iteration, if any."""
    stmt = (
        select(CurationDataset)
        .where(
            CurationDataset.cycle_id == cycle_id,
            CurationDataset.task_name == task_name,
            CurationDataset.iteration < iteration,
        )
        .order_by(CurationDataset.iteration.desc(), CurationDataset.id.desc())
        .limit(1)
    )
    return await session.scalar(stmt)


async def lock_run(session: AsyncSession, run_id: int) -> CurationRun | None:
    # FOR UPDATE serialises deciders of one run on PostgreSQL; without it two reviewers deciding
    # the last two items at once would each still see the other's item pending, and neither
    # would publish. SQLite's BEGIN IMMEDIATE serialises writers already.
    stmt = select(CurationRun).where(CurationRun.id == run_id).with_for_update()
    return await session.scalar(stmt)


async def review(session: AsyncSession, review_id: int) -> CurationReview | None:
    return await session.get(CurationReview, review_id)


async def pending_count(session: AsyncSession, run_id: int) -> int:
    stmt = select(func.count()).where(
        CurationReview.run_id == run_id, CurationReview.status == PENDING
    )
    return int(await session.scalar(stmt) or 0)


async def decisions(session: AsyncSession, run_id: int) -> list[ReviewDecision]:
    stmt = (
        select(CurationReview)
        .where(CurationReview.run_id == run_id, CurationReview.status != PENDING)
        .order_by(CurationReview.row_id)
    )
    return [
        ReviewDecision(r.row_id, r.status, r.edited_output, r.reason)  # type: ignore[arg-type]
        for r in (await session.scalars(stmt)).all()
    ]


async def reviews(session: AsyncSession, status: str | None = PENDING) -> list[CurationReview]:
    stmt = select(CurationReview).order_by(CurationReview.id)
    if status is not None:
        stmt = stmt.where(CurationReview.status == status)
    return list((await session.scalars(stmt)).all())


async def rejections(
    session: AsyncSession, reason: str | None = None, limit: int = 200
) -> list[tuple[CurationRejection, CurationRun]]:
    stmt = (
        select(CurationRejection, CurationRun)
        .join(CurationRun, CurationRun.id == CurationRejection.run_id)
        .order_by(CurationRejection.id)
        .limit(limit)
    )
    if reason is not None:
        stmt = stmt.where(CurationRejection.reason == reason)
    return [(rej, run) for rej, run in (await session.execute(stmt)).all()]
