"""The batched consumer against a real nats-server, on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from contextlib import asynccontextmanager

import nats
import pytest
from nats.js.errors import NotFoundError
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from shared.bus import JetStreamPublisher, PermanentError, make_broker, process_batch
from shared.bus.pull import BatchConsumer, NatsRawMessage
from shared.bus.subscribe import subscribe_batch
from shared.db import Database, InboxRow, OutboxRow, UnitOfWork
from shared.events import STREAM_NAME, ConsumerPolicy
from shared.events.catalog import CycleFailed, CycleRequested, DeadLettered

metadata = MetaData()
# task_name is unique so that a test can make one event of a batch fail inside the database.
effects = Table(
    "batch_effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("task_name", String(100), nullable=False, unique=True),
)


def cycle(task: str) -> CycleRequested:
    return CycleRequested(cycle_id=uuid.uuid4(), task_name=task, producer="test")


class Ledger:
    """A batch handler that records each call and writes one effect row + one answer per event."""

    def __init__(self, fail_on: dict[str, Exception] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on or {}

    async def __call__(self, uow: UnitOfWork, events: list[CycleRequested]) -> None:
        self.calls.append([e.task_name for e in events])
        for event in events:
            if event.task_name in self.fail_on:
                raise self.fail_on[event.task_name]
        await uow.session.execute(
            insert(effects),
            [{"event_id": str(e.event_id), "task_name": e.task_name} for e in events],
        )
        await uow.publish(
            *(
                e.caused(
                    CycleFailed, producer="svc", task_name=e.task_name, stage="synth", reason="x"
                )
                for e in events
            )
        )


async def setup_effects(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def effect_counts(db: Database) -> Counter:
    async with db.uow() as uow:
        rows = (await uow.session.execute(select(effects.c.task_name))).all()
    return Counter(r[0] for r in rows)


async def count(db: Database, stmt) -> int:
    async with db.uow() as uow:
        return await uow.session.scalar(stmt)


async def outbox(db: Database, event_cls) -> list:
    async with db.uow() as uow:
        payloads = (
            await uow.session.scalars(
                select(OutboxRow.payload).where(OutboxRow.subject == event_cls.subject)
            )
        ).all()
    return [event_cls.model_validate_json(p) for p in payloads]


async def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def publish(url: str, *events: CycleRequested) -> None:
    async with make_broker(url, client_name="producer") as broker:
        await broker.connect()
        for event in events:
            await JetStreamPublisher(broker).publish_event(event)


async def publish_raw(url: str, body: bytes) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish(
            CycleRequested.subject, body, headers={"Nats-Msg-Id": uuid.uuid4().hex}
        )
    finally:
        await nc.close()


async def settled(url: str, durable: str) -> bool:
    """Nothing left to deliver and nothing delivered but unacknowledged."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info(STREAM_NAME, durable)
    except NotFoundError:  # the consumer creates its durable once it runs
        return False
    finally:
        await nc.close()
    return info.num_pending == 0 and info.num_ack_pending == 0


@asynccontextmanager
async def running(consumer: BatchConsumer, url: str):
    stop = asyncio.Event()
    async with make_broker(url, client_name="consumer") as broker:
        await broker.connect()
        task = asyncio.create_task(consumer.run(broker, stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


def consumer_for(db: Database, handler, policy: ConsumerPolicy | None = None) -> BatchConsumer:
    return subscribe_batch(
        CycleRequested,
        handler,
        service=f"svc{uuid.uuid4().hex[:6]}",
        db=db,
        policy=policy or ConsumerPolicy(ack_wait_s=5),
        poll_s=0.2,
    )


async def test_a_batch_is_applied_once_in_one_transaction(private_nats, db: Database):
    await setup_effects(db)
    names = [f"t{i}" for i in range(20)]
    await publish(private_nats.url, *(cycle(n) for n in names))
    handler = Ledger()
    consumer = consumer_for(db, handler)
    async with running(consumer, private_nats.url):

        async def done() -> bool:
            return sum((await effect_counts(db)).values()) >= 20 and await settled(
                private_nats.url, consumer.name
            )

        await wait_for(done)
    assert handler.calls == [names], "all 20 were waiting: one fetch, one handler call"
    assert await effect_counts(db) == Counter(names)
    assert await count(db, select(func.count()).select_from(InboxRow)) == 20
    assert sorted(a.task_name for a in await outbox(db, CycleFailed)) == sorted(names)


async def test_a_redelivered_batch_has_no_second_effect(private_nats, db: Database):
    await setup_effects(db)
    names = [f"r{i}" for i in range(10)]
    await publish(private_nats.url, *(cycle(n) for n in names))
    handler = Ledger()
    policy = ConsumerPolicy(ack_wait_s=1)
    consumer = consumer_for(db, handler, policy)

    # First delivery: the batch commits, then its acks are lost (as if the process died).
    nc = await nats.connect(private_nats.url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            CycleRequested.subject,
            durable=consumer.name,
            stream=STREAM_NAME,
            config=consumer.consumer_config(),
        )
        fetched = await sub.fetch(50, timeout=5)
        assert len(fetched) == 10
        await process_batch(
            [AckLost(m) for m in fetched],
            CycleRequested,
            handler,
            service="svc",
            consumer=consumer.name,
            db=db,
            policy=policy,
        )
    finally:
        await nc.close()
    assert await effect_counts(db) == Counter(names)

    # The server redelivers after ack_wait; the kernel finds every inbox row.
    async with running(consumer, private_nats.url):
        await wait_for(lambda: settled(private_nats.url, consumer.name))
    assert handler.calls == [names], "the redelivered batch reached no handler"
    assert await effect_counts(db) == Counter(names)
    assert len(await outbox(db, CycleFailed)) == 10


class KeyedLedger:
    """A claim-free handler: its effect row is keyed (ON CONFLICT DO NOTHING), so it is its
    own inbox row, as the feedback collector's trace consumer is."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    async def __call__(self, uow: UnitOfWork, events: list[CycleRequested]) -> None:
        self.calls.append([e.task_name for e in events])
        dialect = uow.session.bind.dialect.name
        stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(effects)
        await uow.session.execute(
            stmt.on_conflict_do_nothing(index_elements=["task_name"]),
            [{"event_id": str(e.event_id), "task_name": e.task_name} for e in events],
        )


async def test_a_claim_free_consumer_is_exactly_once_by_its_own_key(private_nats, db: Database):
    await setup_effects(db)
    names = [f"k{i}" for i in range(10)]
    twice = cycle("k-twice")
    await publish(private_nats.url, *(cycle(n) for n in names))
    for _ in range(2):  # stored twice: no Nats-Msg-Id
        await publish_raw(private_nats.url, twice.model_dump_json().encode())
    handler = KeyedLedger()
    policy = ConsumerPolicy(ack_wait_s=1)
    consumer = subscribe_batch(
        CycleRequested,
        handler,
        service=f"svc{uuid.uuid4().hex[:6]}",
        db=db,
        policy=policy,
        poll_s=0.2,
        claim=False,
    )
    # First delivery: committed, acks lost.
    nc = await nats.connect(private_nats.url)
    try:
        sub = await nc.jetstream().pull_subscribe(
            CycleRequested.subject,
            durable=consumer.name,
            stream=STREAM_NAME,
            config=consumer.consumer_config(),
        )
        fetched = await sub.fetch(50, timeout=5)
        await process_batch(
            [AckLost(m) for m in fetched],
            CycleRequested,
            handler,
            service="svc",
            consumer=consumer.name,
            db=db,
            policy=policy,
            claim=False,
        )
    finally:
        await nc.close()
    async with running(consumer, private_nats.url):
        await wait_for(lambda: settled(private_nats.url, consumer.name))
    assert await effect_counts(db) == Counter([*names, "k-twice"])
    assert await count(db, select(func.count()).select_from(InboxRow)) == 0
    # The redelivery reached the handler (no inbox to stop it) and its key stopped the effect.
    assert len(handler.calls) >= 2 and handler.calls[0].count("k-twice") == 1


async def test_the_same_event_twice_in_a_batch_is_applied_once(private_nats, db: Database):
    await setup_effects(db)
    twice = cycle("twice")
    # Without a Nats-Msg-Id JetStream stores both copies, as after a duplicate window passed.
    for _ in range(2):
        await publish_raw(private_nats.url, twice.model_dump_json().encode())
    await publish(private_nats.url, cycle("once"))
    handler = Ledger()
    consumer = consumer_for(db, handler)
    async with running(consumer, private_nats.url):
        await wait_for(lambda: settled(private_nats.url, consumer.name))
    assert await effect_counts(db) == Counter({"twice": 1, "once": 1})
    # Usually one batch; under load the fetch may split them. Either way the handler saw each
    # event once: the second copy was claimed already (in its batch or an earlier one).
    assert sorted(name for call in handler.calls for name in call) == ["once", "twice"]


async def test_a_malformed_message_is_dead_lettered_and_the_rest_applied(
    private_nats, db: Database
):
    await setup_effects(db)
    await publish(private_nats.url, cycle("a"))
    await publish_raw(private_nats.url, b"{not json")
    await publish_raw(private_nats.url, json.dumps({"task_name": "no-ids"}).encode())
    await publish(private_nats.url, cycle("b"))
    handler = Ledger()
    consumer = consumer_for(db, handler)
    async with running(consumer, private_nats.url):

        async def done() -> bool:
            return len(await outbox(db, DeadLettered)) == 2 and await settled(
                private_nats.url, consumer.name
            )

        await wait_for(done)
    assert handler.calls == [["a", "b"]], "the batch did not fail over the bad messages"
    assert await effect_counts(db) == Counter({"a": 1, "b": 1})
    letters = await outbox(db, DeadLettered)
    assert {d.error_kind for d in letters} == {"validation"}
    assert {d.consumer for d in letters} == {consumer.name}
    assert any(d.payload_excerpt == "{not json" for d in letters)
    assert any("cycle_id: Field required" in d.reason for d in letters)


@pytest.mark.parametrize("failure", ["permanent", "constraint"])
async def test_a_failed_batch_falls_back_to_one_message_at_a_time(
    private_nats, db: Database, failure: str
):
    await setup_effects(db)
    if failure == "constraint":
        # A row that makes the event "bad" violate the unique key inside the transaction: the
        # database, not the handler, fails the batch. By the policy that is a transient error,
        # retried with backoff until max_deliver, then dead-lettered as exhausted.
        async with db.uow() as uow:
            await uow.session.execute(insert(effects).values(event_id="-", task_name="bad"))
            await uow.commit()
        handler = Ledger()
        kind = "exhausted"
    else:
        handler = Ledger(fail_on={"bad": PermanentError("bad is never valid")})
        kind = "permanent"
    names = ["g1", "g2", "bad", "g3"]
    await publish(private_nats.url, *(cycle(n) for n in names))
    policy = ConsumerPolicy(max_deliver=2, ack_wait_s=5, backoff_base_s=0.2)
    consumer = consumer_for(db, handler, policy)
    async with running(consumer, private_nats.url):

        async def done() -> bool:
            return len(await outbox(db, DeadLettered)) == 1 and await settled(
                private_nats.url, consumer.name
            )

        await wait_for(done)

    good = Counter({"g1": 1, "g2": 1, "g3": 1})
    expected = good + Counter({"bad": 1}) if failure == "constraint" else good
    assert await effect_counts(db) == expected, "the good ones applied once, one by one"
    assert handler.calls[0] == names, "first the whole batch"
    assert ["g1"] in handler.calls and ["g3"] in handler.calls, "then one message at a time"
    [letter] = await outbox(db, DeadLettered)
    assert letter.error_kind == kind
    assert json.loads(letter.payload_excerpt)["task_name"] == "bad"
    assert sorted(a.task_name for a in await outbox(db, CycleFailed)) == ["g1", "g2", "g3"]
    assert await count(db, select(func.count()).select_from(InboxRow)) == 3


class AckLost(NatsRawMessage):
    """The real message, whose ack never reaches the server."""

    async def ack(self) -> None:
        pass
