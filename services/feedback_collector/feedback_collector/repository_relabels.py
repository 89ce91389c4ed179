"""The relabel queue's SQL: inputs rated down with no correction, asked of the teacher once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import RelabelRow
from .repository import dialect_insert

RELABELS = RelabelRow.__table__


async def add(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Queue inputs; one already queued (rated down again) is left as it is."""
    if rows:
        stmt = dialect_insert(session, RELABELS).on_conflict_do_nothing(
            index_elements=["request_id"]
        )
        await session.execute(stmt, rows)


def _askable(retry_before: datetime, attempts: int):
    """Unanswered, asked fewer than `attempts` times, and never asked or asked before
    `retry_before` (its request was dead-lettered or lost)."""
    return and_(
        RELABELS.c.answered_at.is_(None),
        RELABELS.c.attempts < attempts,
        or_(RELABELS.c.asked_by.is_(None), RELABELS.c.asked_at < retry_before),
    )


async def askable(
    session: AsyncSession, task: str, limit: int, retry_before: datetime, attempts: int
) -> list[tuple[str, str]]:
    """(request_id, input) of the task's queued inputs to ask now, oldest first."""
    rows = await session.execute(
        select(RELABELS.c.request_id, RELABELS.c.input)
        .where(RELABELS.c.task_name == task, _askable(retry_before, attempts))
        .order_by(RELABELS.c.id)
        .limit(limit)
    )
    return [tuple(r) for r in rows.all()]


async def asked_since(session: AsyncSession, task: str, since: datetime) -> int:
    """Inputs of the task sent to the teacher since `since` (the daily budget)."""
    count = await session.scalar(
        select(func.count())
        .select_from(RELABELS)
        .where(RELABELS.c.task_name == task, RELABELS.c.asked_at >= since)
    )
    return int(count or 0)


async def mark_asked(
    session: AsyncSession,
    request_ids: list[str],
    asked_by: str,
    now: datetime,
    retry_before: datetime,
    attempts: int,
) -> int:
    """Only rows still askable: a second job or replica racing this one marks none twice."""
    result = await session.execute(
        update(RELABELS)
        .where(RELABELS.c.request_id.in_(request_ids), _askable(retry_before, attempts))
        .values(asked_by=asked_by, asked_at=now, attempts=RELABELS.c.attempts + 1)
    )
    return result.rowcount or 0


async def release(session: AsyncSession, request_ids: list[str]) -> None:
    """Inputs a request asked that the teacher did not answer: askable again next round
    (until their attempts are spent)."""
    if request_ids:
        await session.execute(
            update(RELABELS)
            .where(RELABELS.c.request_id.in_(request_ids), RELABELS.c.answered_at.is_(None))
            .values(asked_by=None)
        )


async def delete_before(session: AsyncSession, cutoff: datetime) -> int:
    """Retention: queued inputs are production text, kept no longer than traces."""
    result = await session.execute(delete(RELABELS).where(RELABELS.c.created_at < cutoff))
    return result.rowcount or 0


async def asked_by(session: AsyncSession, task: str, event_id: str) -> dict[str, list[str]]:
    """request_id -> feedback ids of the rows that request asked and nothing answered yet."""
    rows = await session.execute(
        select(RELABELS.c.request_id, RELABELS.c.feedback_ids).where(
            RELABELS.c.task_name == task,
            RELABELS.c.asked_by == event_id,
            RELABELS.c.answered_at.is_(None),
        )
    )
    return {r: list(f) for r, f in rows.all()}


async def answer(session: AsyncSession, request_id: str, text: str, now: datetime) -> None:
    await session.execute(
        update(RELABELS)
        .where(RELABELS.c.request_id == request_id)
        .values(answer=text, answered_at=now)
    )


async def answers(session: AsyncSession, request_ids: set[str]) -> dict[str, str]:
    """The teacher's relabel per request, where there is one."""
    if not request_ids:
        return {}
    rows = await session.execute(
        select(RELABELS.c.request_id, RELABELS.c.answer).where(
            RELABELS.c.request_id.in_(request_ids), RELABELS.c.answer.is_not(None)
        )
    )
    return dict(rows.all())
