"""The outbox relay against a real nats-server, on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest
from sqlalchemy import event, func, select

from shared.bus import JetStreamPublisher, make_broker
from shared.db import Database, OutboxRow
from shared.events.catalog import CycleRequested
from shared.relay import OutboxRelay, PipelinedPublisher
from tests.fixtures.streams import stream_messages


class CountingPublisher:
    """The real JetStream publisher, counting calls so double sends show up."""

    def __init__(self, inner: JetStreamPublisher) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def publish(self, subject: str, payload: bytes, event_id: str) -> None:
        self.calls.append(event_id)
        await self.inner.publish(subject, payload, event_id)


class CountingPipelined:
    """The pipelined JetStream publisher the relay uses by default, counting what it sends."""

    def __init__(self, inner: JetStreamPublisher) -> None:
        self.inner = PipelinedPublisher(inner)
        self.calls: list[str] = []

    async def publish_batch(self, messages: Sequence[tuple[str, bytes, str]]) -> list:
        self.calls.extend(event_id for _, _, event_id in messages)
        return await self.inner.publish_batch(messages)


async def stage(db: Database, producer: str, n: int) -> list[CycleRequested]:
    events = [
        CycleRequested(cycle_id=uuid.uuid4(), task_name=f"task-{i}", producer=producer)
        for i in range(n)
    ]
    async with db.uow() as uow:
        await uow.publish(*events)
        await uow.commit()
    return events


async def unsent(db: Database) -> int:
    async with db.uow() as uow:
        return await uow.session.scalar(
            select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
        )


async def test_relay_publishes_with_event_id_as_msg_id(private_nats, db: Database):
    events = await stage(db, "p", 5)
    async with make_broker(private_nats.url, client_name="relay") as broker:
        await broker.connect()
        sent = await OutboxRelay(db, JetStreamPublisher(broker), producer="p").drain()
    assert sent == 5
    assert await unsent(db) == 0
    msgs = await stream_messages(private_nats.url)
    assert [m.headers["Nats-Msg-Id"] for m in msgs] == [str(e.event_id) for e in events]
    assert [CycleRequested.model_validate_json(m.data) for m in msgs] == events


async def test_relay_only_sends_its_producers_rows(private_nats, db: Database):
    await stage(db, "mine", 3)
    await stage(db, "theirs", 2)
    async with make_broker(private_nats.url, client_name="relay") as broker:
        await broker.connect()
        assert await OutboxRelay(db, JetStreamPublisher(broker), producer="mine").drain() == 3
    assert await unsent(db) == 2


@pytest.mark.parametrize("publisher", [CountingPublisher, CountingPipelined])
async def test_concurrent_relays_send_each_row_once(private_nats, db_url: str, publisher):
    # Separate Database objects: separate pools, as separate processes would have.
    dbs = [Database(db_url) for _ in range(3)]
    try:
        events = await stage(dbs[0], "p", 300)
        async with make_broker(private_nats.url, client_name="relay") as broker:
            await broker.connect()
            publishers = [publisher(JetStreamPublisher(broker)) for _ in dbs]
            relays = [
                OutboxRelay(d, pub, producer="p", batch_size=20, name=f"r{i}")
                for i, (d, pub) in enumerate(zip(dbs, publishers, strict=True))
            ]
            await asyncio.gather(*(r.drain() for r in relays))
        calls = [c for p in publishers for c in p.calls]
        assert sorted(calls) == sorted(str(e.event_id) for e in events)
        assert sum(1 for p in publishers if p.calls) >= 2, "the relays should share the work"
        assert await unsent(dbs[0]) == 0
        assert len(await stream_messages(private_nats.url)) == 300
    finally:
        for d in dbs:
            await d.dispose()


async def test_relay_waits_out_a_broker_outage(private_nats, db: Database):
    before = await stage(db, "p", 10)
    stop = asyncio.Event()
    async with make_broker(private_nats.url, client_name="relay") as broker:
        await broker.connect()
        relay = OutboxRelay(
            db,
            JetStreamPublisher(broker, timeout_s=1.0),
            producer="p",
            poll_interval_s=0.1,
            retry_after_s=0.3,
        )
        task = asyncio.create_task(relay.run(stop))
        for _ in range(100):
            if await unsent(db) == 0:
                break
            await asyncio.sleep(0.05)
        private_nats.kill()
        during = await stage(db, "p", 10)
        await asyncio.sleep(1.5)
        assert await unsent(db) == 10, "nothing can be sent while the broker is down"
        private_nats.start()
        for _ in range(200):
            if await unsent(db) == 0:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task
    assert await unsent(db) == 0
    ids = [m.headers["Nats-Msg-Id"] for m in await stream_messages(private_nats.url)]
    assert ids == [str(e.event_id) for e in before + during]


async def test_duplicate_window_drops_a_repeated_event_id(private_nats):
    event = CycleRequested(cycle_id=uuid.uuid4(), task_name="t", producer="p")
    async with make_broker(private_nats.url, client_name="dup") as broker:
        await broker.connect()
        publisher = JetStreamPublisher(broker)
        await publisher.publish_event(event)
        await publisher.publish_event(event)
    assert len(await stream_messages(private_nats.url)) == 1


async def test_a_pass_marks_its_whole_batch_sent_in_one_statement(private_nats, db: Database):
    await stage(db, "p", 50)
    updates: list[str] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def record(conn, cursor, statement: str, *args) -> None:
        if statement.lstrip().upper().startswith("UPDATE OUTBOX SET SENT_AT"):
            updates.append(statement)

    async with make_broker(private_nats.url, client_name="relay") as broker:
        await broker.connect()
        relay = OutboxRelay(db, JetStreamPublisher(broker), producer="p", batch_size=50)
        assert await relay.drain_once() == 50
    assert len(updates) == 1
    assert await unsent(db) == 0
    assert len(await stream_messages(private_nats.url)) == 50
