"""The drift watch's reads and writes (repository.py's part for drift, split off for size):
each task's reference dataset, and the windows of live traffic the tests compare with it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .models import ReferenceRow, TraceRow
from .repository import feedback_by_request

TRACES = TraceRow.__table__
# Served to a client: a shadow copy is nobody's answer and shares its request's input.
LIVE = TRACES.c.arm != "shadow"


async def set_reference(session: AsyncSession, values: dict[str, Any]) -> None:
    """The task's reference becomes this dataset unless a later-published one is there
    (a redelivered or late DatasetPublished never sets the reference back)."""
    dialect = session.bind.dialect.name
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ReferenceRow.__table__)
    stmt = stmt.values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["task_name"],
        set_={k: stmt.excluded[k] for k in ("dataset_version", "train", "published_at")},
        where=ReferenceRow.__table__.c.published_at < stmt.excluded.published_at,
    )
    await session.execute(stmt)


async def references(session: AsyncSession) -> list[tuple[str, str, dict, datetime]]:
    rows = await session.execute(
        select(
            ReferenceRow.task_name,
            ReferenceRow.dataset_version,
            ReferenceRow.train,
            ReferenceRow.published_at,
        ).order_by(ReferenceRow.task_name)
    )
    return [tuple(r) for r in rows.all()]


async def recent_inputs(
    session: AsyncSession, task: str, since: datetime, limit: int
) -> list[tuple[list[dict], datetime]]:
    """(messages, occurred_at) of the task's latest `limit` live requests since `since`."""
    rows = await session.execute(
        select(TRACES.c.messages, TRACES.c.occurred_at)
        .where(TRACES.c.task_name == task, TRACES.c.occurred_at >= since, LIVE)
        .order_by(TRACES.c.occurred_at.desc())
        .limit(limit)
    )
    return [tuple(r) for r in rows.all()][::-1]


async def outcomes(session: AsyncSession, task: str, since: datetime) -> list[tuple]:
    """(occurred_at, error, worst rating, escalated) of each live request since `since`, in
    order: the quality watch's stream."""
    fb = feedback_by_request(task)
    rows = await session.execute(
        select(TRACES.c.occurred_at, TRACES.c.error, fb.c.rating, fb.c.escalate)
        .select_from(TRACES.outerjoin(fb, and_(fb.c.request_id == TRACES.c.request_id)))
        .where(TRACES.c.task_name == task, TRACES.c.occurred_at >= since, LIVE)
        .order_by(TRACES.c.occurred_at, TRACES.c.id)
    )
    return [tuple(r) for r in rows.all()]
