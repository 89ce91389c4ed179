"""Reads and writes of the feedback-collector's tables; no other module builds a query."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, cast, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .models import ExampleRow, FeedbackRow, RejectionRow, RolloutRow, TraceRow

TRACES = TraceRow.__table__
FEEDBACK = FeedbackRow.__table__


def dialect_insert(session: AsyncSession, table):
    dialect = session.bind.dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


# --- ingest ---


async def add_traces(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Core insert with a list of parameters: one executemany, no ORM unit-of-work per row.
    A trace already stored (its event redelivered) is skipped: the event id is the key that
    makes the trace consumer exactly-once without inbox rows."""
    stmt = dialect_insert(session, TRACES).on_conflict_do_nothing(index_elements=["event_id"])
    await session.execute(stmt, rows)


async def stages_of(session: AsyncSession, deployment_ids: set[str]) -> dict[str, str]:
    if not deployment_ids:
        return {}
    rows = await session.execute(
        select(RolloutRow.deployment_id, RolloutRow.stage).where(
            RolloutRow.deployment_id.in_(deployment_ids)
        )
    )
    return {d: s for d, s in rows.all()}


# pg_advisory_xact_lock key ("fbmatch" as an int): held from matching to commit by both ingest
# consumers, so a trace batch and a feedback batch for the same request cannot each commit
# without seeing the other (read committed); SQLite serializes its writers by itself.
MATCH_LOCK = 0x66626D61746368


async def lock_matching(session: AsyncSession) -> None:
    if session.bind.dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(MATCH_LOCK)))


async def match_pending(session: AsyncSession, request_ids: set[str], now: datetime) -> int:
    """Feedback that was waiting for one of these traces is matched now."""
    if not request_ids:
        return 0
    result = await session.execute(
        update(FEEDBACK)
        .where(FEEDBACK.c.matched_at.is_(None), FEEDBACK.c.request_id.in_(request_ids))
        .values(matched_at=now)
    )
    return result.rowcount or 0


async def match_all_pending(session: AsyncSession, now: datetime) -> int:
    """Every waiting feedback whose trace is stored: the sweep's safety net before expiry."""
    result = await session.execute(
        update(FEEDBACK)
        .where(
            FEEDBACK.c.matched_at.is_(None),
            FEEDBACK.c.used_at.is_(None),
            FEEDBACK.c.request_id.in_(select(TRACES.c.request_id)),
        )
        .values(matched_at=now)
    )
    return result.rowcount or 0


async def traced(session: AsyncSession, request_ids: set[str]) -> set[str]:
    if not request_ids:
        return set()
    rows = await session.scalars(
        select(TRACES.c.request_id).where(TRACES.c.request_id.in_(request_ids)).distinct()
    )
    return set(rows.all())


async def add_feedback(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    await session.execute(insert(FEEDBACK), rows)


async def upsert_rollout(session: AsyncSession, values: dict[str, Any]) -> None:
    stmt = dialect_insert(session, RolloutRow.__table__).values(**values)
    keep = {k: stmt.excluded[k] for k in values if k != "deployment_id"}
    await session.execute(stmt.on_conflict_do_update(index_elements=["deployment_id"], set_=keep))


# --- retention ---


async def delete_traces_before(session: AsyncSession, cutoff: datetime) -> int:
    result = await session.execute(delete(TRACES).where(TRACES.c.occurred_at < cutoff))
    gone = await session.execute(
        delete(FEEDBACK).where(FEEDBACK.c.occurred_at < cutoff, FEEDBACK.c.matched_at.is_not(None))
    )
    return (result.rowcount or 0) + (gone.rowcount or 0)


async def pending_before(session: AsyncSession, cutoff: datetime) -> list[FeedbackRow]:
    rows = await session.scalars(
        select(FeedbackRow).where(
            FeedbackRow.matched_at.is_(None),
            FeedbackRow.used_at.is_(None),
            FeedbackRow.received_at < cutoff,
        )
    )
    return list(rows.all())


# --- training data ---


async def unused_feedback(session: AsyncSession, task: str) -> list[FeedbackRow]:
    rows = await session.scalars(
        select(FeedbackRow)
        .where(FeedbackRow.task_name == task, FeedbackRow.used_at.is_(None))
        .order_by(FeedbackRow.id)
    )
    return list(rows.all())


async def tasks_with_feedback(session: AsyncSession) -> list[str]:
    """Tasks with feedback not looked at yet, or with examples: those a build may concern."""
    waiting = select(FeedbackRow.task_name).where(FeedbackRow.used_at.is_(None))
    rows = await session.scalars(waiting.union(select(ExampleRow.task_name)))
    return sorted(set(rows.all()))


async def traces_for(session: AsyncSession, request_ids: set[str]) -> list[TraceRow]:
    if not request_ids:
        return []
    rows = await session.scalars(select(TraceRow).where(TraceRow.request_id.in_(request_ids)))
    return list(rows.all())


async def add_examples(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        stmt = dialect_insert(session, ExampleRow.__table__).on_conflict_do_nothing(
            index_elements=["example_id"]
        )
        await session.execute(stmt, rows)


async def add_rejections(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        stmt = dialect_insert(session, RejectionRow.__table__).on_conflict_do_nothing(
            index_elements=["feedback_event_id"]
        )
        await session.execute(stmt, rows)


async def mark_used(session: AsyncSession, event_ids: Sequence[str], now: datetime) -> None:
    if event_ids:
        await session.execute(
            update(FEEDBACK).where(FEEDBACK.c.event_id.in_(list(event_ids))).values(used_at=now)
        )


async def examples(session: AsyncSession, task: str) -> list[ExampleRow]:
    rows = await session.scalars(
        select(ExampleRow).where(ExampleRow.task_name == task).order_by(ExampleRow.id)
    )
    return list(rows.all())


async def rejections(session: AsyncSession, task: str) -> list[RejectionRow]:
    rows = await session.scalars(
        select(RejectionRow).where(RejectionRow.task_name == task).order_by(RejectionRow.id)
    )
    return list(rows.all())


# --- metrics ---


def feedback_by_request(task: str):
    """Per request id of the task: its worst rating and whether anyone escalated it."""
    return (
        select(
            FEEDBACK.c.request_id,
            func.min(FEEDBACK.c.rating).label("rating"),
            func.max(cast(FEEDBACK.c.escalate, Integer)).label("escalate"),
        )
        .where(FEEDBACK.c.task_name == task)
        .group_by(FEEDBACK.c.request_id)
        .subquery()
    )


async def window(session: AsyncSession, task: str, since: datetime) -> list[tuple]:
    """(model_version, stage, arm, latency_ms, error, completion, negative?, escalate?) rows."""
    fb = feedback_by_request(task)
    rows = await session.execute(
        select(
            TRACES.c.model_version,
            TRACES.c.stage,
            TRACES.c.arm,
            TRACES.c.latency_ms,
            TRACES.c.error,
            TRACES.c.completion,
            fb.c.rating,
            fb.c.escalate,
        )
        .select_from(TRACES.outerjoin(fb, and_(fb.c.request_id == TRACES.c.request_id)))
        .where(TRACES.c.task_name == task, TRACES.c.occurred_at >= since)
    )
    return [tuple(r) for r in rows.all()]


async def unfinished_rollouts(session: AsyncSession) -> list[RolloutRow]:
    rows = await session.scalars(
        select(RolloutRow).where(RolloutRow.stage.in_(("shadow", "ab"))).order_by(RolloutRow.id)
    )
    return list(rows.all())


async def arm_window(session: AsyncSession, task: str, stage: str, since: datetime) -> list[tuple]:
    """(request_id, deployment_id, arm, latency_ms, error, completion, rating) rows of the
    task's traces served at rollout stage `stage` since `since`, each with its worst rating.
    The stage filter keeps late shadow copies out of the A/B step that followed."""
    fb = feedback_by_request(task)
    rows = await session.execute(
        select(
            TRACES.c.request_id,
            TRACES.c.deployment_id,
            TRACES.c.arm,
            TRACES.c.latency_ms,
            TRACES.c.error,
            TRACES.c.completion,
            fb.c.rating,
        )
        .select_from(TRACES.outerjoin(fb, fb.c.request_id == TRACES.c.request_id))
        .where(
            TRACES.c.task_name == task,
            TRACES.c.stage == stage,
            TRACES.c.occurred_at >= since,
        )
    )
    return [tuple(r) for r in rows.all()]
