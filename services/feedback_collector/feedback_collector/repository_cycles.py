"""The retrain side's reads and writes (repository.py's part, split off for size): the cycles
this service asked for, the trusted examples counted against them, each task's drift
reference, and the windows of live traffic the drift tests read."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import CycleRow, ExampleRow, ReferenceRow, TraceRow
from .repository import dialect_insert, feedback_by_request

TRACES = TraceRow.__table__
# Served to a client: a shadow copy is nobody's answer and shares its request's input.
LIVE = TRACES.c.arm != "shadow"


# --- cycles ---

# pg_advisory_xact_lock keys, one per task: the feedback-dataset job and the drift watch (and
# replicas) decide on a task's cycles one at a time, so two never both see none in flight.
CYCLE_LOCK = 0x6379636C65  # "cycle"


def _task_key(task: str) -> int:
    digest = hashlib.sha256(task.encode()).digest()
    return CYCLE_LOCK ^ int.from_bytes(digest[:6], "big")


async def lock_cycles(session: AsyncSession, task: str) -> None:
    if session.bind.dialect.name == "postgresql":  # SQLite serializes its writers by itself
        await session.execute(select(func.pg_advisory_xact_lock(_task_key(task))))


async def add_cycle(session: AsyncSession, values: dict[str, Any]) -> bool:
    """False when a cycle with this trigger was asked for already (a repeated alarm)."""
    stmt = dialect_insert(session, CycleRow.__table__).on_conflict_do_nothing(
        index_elements=["trigger"]
    )
    result = await session.execute(stmt, values)
    return result.rowcount == 1


async def add_started_cycle(session: AsyncSession, values: dict[str, Any]) -> None:
    """A cycle someone else started (an operator): nothing when its id or trigger is known."""
    stmt = dialect_insert(session, CycleRow.__table__).on_conflict_do_nothing()
    await session.execute(stmt, values)


async def cycles(session: AsyncSession, task: str) -> list[CycleRow]:
    rows = await session.scalars(
        select(CycleRow).where(CycleRow.task_name == task).order_by(CycleRow.id)
    )
    return list(rows.all())


async def finish_cycle(session: AsyncSession, cycle_id: str, task: str, now: datetime) -> None:
    """The cycle is over. One not recorded yet (its `cycle.requested` is consumed by another
    durable and may come later) is recorded finished, so that late start changes nothing."""
    result = await session.execute(
        update(CycleRow)
        .where(CycleRow.cycle_id == cycle_id, CycleRow.finished_at.is_(None))
        .values(finished_at=now)
    )
    if result.rowcount == 0:
        await add_started_cycle(
            session,
            {
                "cycle_id": cycle_id,
                "task_name": task,
                "trigger": f"started:{cycle_id}",
                "reason": "manual",
                "detail": "its end was heard of before its start",
                "requested_at": now,
                "finished_at": now,
                "examples_upto": 0,
            },
        )


# --- trusted examples (SFT only: a preference pair is the same correction seen again) ---

SFT = ExampleRow.kind == "sft"


async def sft_high_water(session: AsyncSession, task: str) -> int:
    """The task's newest SFT example id (0: none): what a cycle started now includes."""
    stmt = select(func.max(ExampleRow.id)).where(ExampleRow.task_name == task, SFT)
    return int(await session.scalar(stmt) or 0)


async def sft_count_after(session: AsyncSession, task: str, after_id: int) -> int:
    stmt = (
        select(func.count())
        .select_from(ExampleRow)
        .where(ExampleRow.task_name == task, ExampleRow.id > after_id, SFT)
    )
    return int(await session.scalar(stmt) or 0)


async def sft_examples(session: AsyncSession, task: str) -> list[ExampleRow]:
    rows = await session.scalars(
        select(ExampleRow).where(ExampleRow.task_name == task, SFT).order_by(ExampleRow.id)
    )
    return list(rows.all())


# --- drift ---


async def set_reference(session: AsyncSession, values: dict[str, Any]) -> None:
    """The task's reference becomes this dataset unless a later-published one is there
    (a redelivered or late DatasetPublished never sets the reference back)."""
    stmt = dialect_insert(session, ReferenceRow.__table__).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["task_name"],
        set_={
            k: stmt.excluded[k] for k in ("dataset_version", "train", "task_spec", "published_at")
        },
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


async def reference_specs(session: AsyncSession) -> dict[str, dict | None]:
    """task -> the spec (ArtifactRef) its reference dataset applied."""
    rows = await session.execute(select(ReferenceRow.task_name, ReferenceRow.task_spec))
    return {task: spec for task, spec in rows.all()}


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


async def outcomes(session: AsyncSession, task: str, since: datetime, limit: int) -> list[tuple]:
    """(occurred_at, error, worst rating, escalated) of the latest `limit` live requests since
    `since`, oldest first: the quality watch's stream."""
    fb = feedback_by_request(task)
    rows = await session.execute(
        select(TRACES.c.occurred_at, TRACES.c.error, fb.c.rating, fb.c.escalate)
        .select_from(TRACES.outerjoin(fb, and_(fb.c.request_id == TRACES.c.request_id)))
        .where(TRACES.c.task_name == task, TRACES.c.occurred_at >= since, LIVE)
        .order_by(TRACES.c.occurred_at.desc(), TRACES.c.id.desc())
        .limit(limit)
    )
    return [tuple(r) for r in rows.all()][::-1]
