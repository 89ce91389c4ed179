"""The service's tables, behind small functions; the only module here that speaks SQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shared.db import Database
from shared.events.base import ArtifactRef

from .models import SynthResponse, SynthRun, SynthTask
from .teacher import Reply

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


def _insert(dialect: str):
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


class DbResponseCache:
    """The teacher's response cache, one short transaction per lookup or answer.

    An answer is stored as soon as it is paid for, so a job killed half-way keeps its progress.
    """

    def __init__(self, db: Database, *, cycle_id: str, iteration: int, parallel: int = 4) -> None:
        self.db = db
        self.cycle_id = cycle_id
        self.iteration = iteration
        # Hundreds of examples in flight must not drain the connection pool.
        self._gate = asyncio.Semaphore(parallel)

    async def get(self, key: str) -> Reply | None:
        async with self._gate, self.db.uow() as uow:
            row = await uow.session.get(SynthResponse, key)
            if row is None:
                return None
            return Reply(row.content, row.prompt_tokens, row.completion_tokens, cached=True)

    async def put(self, key: str, reply: Reply, *, model: str, purpose: str) -> None:
        stmt = (
            _insert(self.db.dialect)(SynthResponse)
            .values(
                key=key,
                model=model[:200],
                purpose=purpose,
                content=reply.text,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
                cycle_id=self.cycle_id,
                iteration=self.iteration,
                created_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing(index_elements=["key"])
        )
        async with self._gate, self.db.uow() as uow:
            await uow.session.execute(stmt)
            await uow.commit()


async def register_task(
    session: AsyncSession, dialect: str, name: str, version: int, ref: ArtifactRef
) -> None:
    stmt = (
        _insert(dialect)(SynthTask)
        .values(name=name, version=version, registered_at=datetime.now(UTC), **ref.model_dump())
        .on_conflict_do_nothing(index_elements=["name", "version"])
    )
    await session.execute(stmt)


async def known_versions(db: Database, name: str) -> dict[int, str]:
    """version -> spec sha256 of every registration of `name` this service accepted."""
    stmt = select(SynthTask.version, SynthTask.sha256).where(SynthTask.name == name)
    async with db.uow() as uow:
        return {v: sha for v, sha in (await uow.session.execute(stmt)).all()}


async def upsert_run(
    session: AsyncSession, dialect: str, cycle_id: str, iteration: int, **values: Any
) -> None:
    now = datetime.now(UTC)
    values = {**values, "updated_at": now}
    insert = _insert(dialect)(SynthRun).values(
        cycle_id=cycle_id,
        iteration=iteration,
        started_at=now,
        **{**_RUN_DEFAULTS, **values},
    )
    await session.execute(
        insert.on_conflict_do_update(index_elements=["cycle_id", "iteration"], set_=values)
    )


_RUN_DEFAULTS: dict[str, Any] = {
    "status": "running",
    "total": 0,
    "done": 0,
    "accepted": 0,
    "rejected": 0,
    "requests": 0,
    "cache_hits": 0,
    "retries": 0,
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "cost_usd": 0.0,
}


async def start_run(db: Database, cycle_id: str, iteration: int, **values: Any) -> None:
    async with db.uow() as uow:
        await upsert_run(uow.session, db.dialect, cycle_id, iteration, **values)
        await uow.commit()


async def update_run(db: Database, cycle_id: str, iteration: int, **values: Any) -> None:
    """Progress, in its own short transaction (visible to tooling while the job runs)."""
    stmt = (
        update(SynthRun)
        .where(SynthRun.cycle_id == cycle_id, SynthRun.iteration == iteration)
        .values(updated_at=datetime.now(UTC), **values)
    )
    async with db.uow() as uow:
        await uow.session.execute(stmt)
        await uow.commit()


async def spent(db: Database, cycle_id: str, iteration: int) -> tuple[int, int]:
    """Tokens this cycle iteration paid for, over every delivery that worked on it."""
    stmt = select(
        func.coalesce(func.sum(SynthResponse.prompt_tokens), 0),
        func.coalesce(func.sum(SynthResponse.completion_tokens), 0),
    ).where(SynthResponse.cycle_id == cycle_id, SynthResponse.iteration == iteration)
    async with db.uow() as uow:
        prompt, completion = (await uow.session.execute(stmt)).one()
    return int(prompt), int(completion)


async def get_run(db: Database, cycle_id: str, iteration: int = 1) -> SynthRun | None:
    async with db.uow() as uow:
        stmt = select(SynthRun).where(
            SynthRun.cycle_id == cycle_id, SynthRun.iteration == iteration
        )
        row = (await uow.session.execute(stmt)).scalar_one_or_none()
        if row is not None:
            uow.session.expunge(row)
        return row


async def runs_of(db: Database, cycle_id: str) -> list[SynthRun]:
    """Every run row of a cycle, by iteration (detached: read-only snapshots)."""
    async with db.uow() as uow:
        stmt = select(SynthRun).where(SynthRun.cycle_id == cycle_id).order_by(SynthRun.iteration)
        rows = list((await uow.session.scalars(stmt)).all())
        for row in rows:
            uow.session.expunge(row)
        return rows
