"""Unit of work, inbox and outbox on real PostgreSQL and SQLite; migrations both ways."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, inspect, select

from shared.db import Database, InboxRow, OutboxRow
from shared.db.migrate import downgrade, upgrade
from shared.events.catalog import CycleRequested


def cycle() -> CycleRequested:
    return CycleRequested(cycle_id=uuid.uuid4(), task_name="t", producer="test")


async def count(db: Database, model) -> int:
    async with db.uow() as uow:
        return await uow.session.scalar(select(func.count()).select_from(model))


async def test_uow_discards_everything_without_commit(db: Database):
    async with db.uow() as uow:
        assert await uow.claim("c", cycle())
        await uow.publish(cycle())
    assert await count(db, OutboxRow) == 0
    assert await count(db, InboxRow) == 0


async def test_uow_discards_on_exception(db: Database):
    with pytest.raises(RuntimeError):
        async with db.uow() as uow:
            await uow.publish(cycle())
            raise RuntimeError("effect failed half way")
    assert await count(db, OutboxRow) == 0


async def test_commit_keeps_inbox_marker_and_outbox_together(db: Database):
    event, answer = cycle(), cycle()
    async with db.uow() as uow:
        assert await uow.claim("consumer-a", event)
        await uow.publish(answer)
        await uow.commit()
    async with db.uow() as uow:
        assert not await uow.claim("consumer-a", event), "second claim must see the first"
        assert await uow.claim("consumer-b", event), "claims are per consumer"
        await uow.publish(answer)  # same event_id again: ignored, not an error
        await uow.commit()
    assert await count(db, OutboxRow) == 1
    assert await count(db, InboxRow) == 2
    assert db.outbox_signal.is_set()


async def test_racing_deliveries_claim_once(db: Database):
    event = cycle()
    winners: list[bool] = []

    async def deliver() -> None:
        async with db.uow() as uow:
            claimed = await uow.claim("racer", event)
            await asyncio.sleep(0.2)  # hold the transaction open while the other one tries
            await uow.commit()
            winners.append(claimed)

    await asyncio.gather(deliver(), deliver())
    assert sorted(winners) == [False, True]


def test_migrations_upgrade_and_downgrade(db_url: str):
    # db_url arrives migrated to head; go all the way down and back up.
    downgrade(db_url, "base")
    upgrade(db_url, "head")
    downgrade(db_url, "base")

    async def tables() -> set[str]:
        database = Database(db_url)
        try:
            async with database.engine.connect() as conn:
                return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await database.dispose()

    assert {"outbox", "inbox"} & asyncio.run(tables()) == set()
    upgrade(db_url, "head")
    assert {"outbox", "inbox"} <= asyncio.run(tables())
