"""A service on the batched consumer, SIGKILLed in the middle of a batch; every event once."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter

import nats
import pytest
from sqlalchemy import func, select

from shared.bus import JetStreamPublisher, durable_name, make_broker
from shared.db import Database, InboxRow, OutboxRow
from shared.events import STREAM_NAME
from shared.events.catalog import CycleFailed, CycleRequested
from shared.relay import OutboxRelay
from tests.fixtures import batch_ledger_service
from tests.fixtures.processes import serve, stop
from tests.fixtures.streams import stream_messages

pytestmark = pytest.mark.slow
TARGET = "tests.fixtures.batch_ledger_service:create_app"
CONSUMER = durable_name(batch_ledger_service.NAME, CycleRequested)


async def effect_counts(db: Database) -> Counter:
    async with db.uow() as uow:
        rows = (await uow.session.execute(select(batch_ledger_service.effects.c.task_name))).all()
    return Counter(r[0] for r in rows)


async def scalar(db: Database, stmt):
    async with db.uow() as uow:
        return await uow.session.scalar(stmt)


async def unacked(nats_url: str) -> int:
    nc = await nats.connect(nats_url)
    try:
        return (await nc.jetstream().consumer_info(STREAM_NAME, CONSUMER)).num_ack_pending
    finally:
        await nc.close()


async def publish_cycles(db: Database, nats_url: str, names: list[str]) -> None:
    events = [CycleRequested(cycle_id=uuid.uuid4(), task_name=n, producer="cli") for n in names]
    async with db.uow() as uow:
        await uow.publish(*events)
        await uow.commit()
    async with make_broker(nats_url, client_name="cli") as broker:
        await broker.connect()
        await OutboxRelay(db, JetStreamPublisher(broker), producer="cli").drain()


async def answers_in_stream(nats_url: str) -> Counter:
    msgs = await stream_messages(nats_url, CycleFailed.subject)
    return Counter(CycleFailed.model_validate_json(m.data).task_name for m in msgs)


async def wait_until(check, proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process exited early with {proc.returncode}")
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("crash_at", ["after-commit", "before-commit"])
async def test_batch_consumer_killed_mid_batch(private_nats, db: Database, tmp_path, crash_at):
    async with db.engine.begin() as conn:
        await conn.run_sync(batch_ledger_service.metadata.create_all)
    # All published before the service starts, so its first fetch is one batch holding them.
    names = [f"t{i}" for i in range(15)] + ["crash-me"] + [f"u{i}" for i in range(15)]
    await publish_cycles(db, private_nats.url, names)
    env = {
        "DISTILLERY_ACK_WAIT_S": "2",
        "BATCH_LEDGER_CRASH_MARKER": str(tmp_path / "crashed"),
        "BATCH_LEDGER_CRASH_AT": crash_at,
    }
    log = tmp_path / "service.log"

    first = serve(TARGET, private_nats.url, db.url, log=log, **env)
    assert first.wait(60) == -signal.SIGKILL, "the service should have killed itself"
    applied = await effect_counts(db)
    if crash_at == "after-commit":
        assert applied == Counter(names), "the whole batch committed before the kill"
        assert await unacked(private_nats.url) == len(names), "and none of it was acked"
    else:
        assert applied == Counter(), "nothing of the open transaction survived the kill"
    assert await scalar(db, select(func.count()).select_from(InboxRow)) == sum(applied.values())

    second = serve(TARGET, private_nats.url, db.url, log=log, **env)
    try:

        async def all_applied() -> bool:
            unsent = await scalar(
                db, select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
            )
            return sum((await effect_counts(db)).values()) >= len(names) and unsent == 0

        await wait_until(all_applied, second)
        await asyncio.sleep(3)  # past ack_wait: a message still unacked would be redelivered

        async def all_acked() -> bool:
            return await unacked(private_nats.url) == 0

        await wait_until(all_acked, second, timeout=15)
    finally:
        stop(second)

    assert await effect_counts(db) == Counter(names), "every effect exactly once"
    assert await scalar(db, select(func.count()).select_from(InboxRow)) == len(names)
    assert await answers_in_stream(private_nats.url) == Counter(names), "every answer once"
