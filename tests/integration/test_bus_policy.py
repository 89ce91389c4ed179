"""The error policy against a real nats-server: dead letters, delayed retries, heartbeats."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid

import nats
from faststream.nats import NatsBroker
from sqlalchemy import select

from shared.bus import JetStreamPublisher, PermanentError, make_broker, subscribe
from shared.db import Database, OutboxRow
from shared.events import STREAM_NAME, ConsumerPolicy
from shared.events.catalog import CycleRequested, DeadLettered


def cycle(task: str = "t") -> CycleRequested:
    return CycleRequested(cycle_id=uuid.uuid4(), task_name=task, producer="test")


async def dead_letters(db: Database) -> list[DeadLettered]:
    async with db.uow() as uow:
        payloads = (
            await uow.session.scalars(
                select(OutboxRow.payload).where(OutboxRow.subject == DeadLettered.subject)
            )
        ).all()
    return [DeadLettered.model_validate_json(p) for p in payloads]


async def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def publish_raw(url: str, subject: str, body: bytes) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish(subject, body, headers={"Nats-Msg-Id": uuid.uuid4().hex})
    finally:
        await nc.close()


def broker_for(url: str) -> NatsBroker:
    return make_broker(url, client_name="test")


async def test_malformed_payload_is_dead_lettered_and_consumer_keeps_going(private_nats, sqlite_db):
    seen: list[str] = []

    async def handle(event: CycleRequested, _delivery) -> None:
        seen.append(event.task_name)

    service = f"svc{uuid.uuid4().hex[:6]}"
    broker = broker_for(private_nats.url)
    task = f"bad-{uuid.uuid4().hex[:6]}"
    subscribe(broker, CycleRequested, handle, service=service, db=sqlite_db)
    async with broker:
        await broker.start()
        await publish_raw(private_nats.url, CycleRequested.subject, b"{not json")
        await publish_raw(
            private_nats.url, CycleRequested.subject, json.dumps({"task_name": task}).encode()
        )
        await JetStreamPublisher(broker).publish_event(cycle(task))

        async def done() -> bool:
            return task in seen and len(await dead_letters(sqlite_db)) == 2

        await wait_for(done)

    letters = await dead_letters(sqlite_db)
    assert {d.error_kind for d in letters} == {"validation"}
    reasons = " | ".join(d.reason for d in letters)
    assert "cycle_id: Field required" in reasons
    assert "producer: Field required" in reasons
    assert all(d.producer == service for d in letters)
    assert any(d.payload_excerpt == "{not json" for d in letters)


async def test_transient_errors_retry_with_growing_delay_then_succeed(private_nats, sqlite_db):
    attempts: list[float] = []

    async def flaky(event: CycleRequested, delivery) -> None:
        attempts.append(time.monotonic())
        if delivery.number < 3:
            raise ConnectionError("teacher unreachable")

    policy = ConsumerPolicy(max_deliver=5, ack_wait_s=10, backoff_base_s=0.4)
    broker = broker_for(private_nats.url)
    service = f"svc{uuid.uuid4().hex[:6]}"
    subscribe(broker, CycleRequested, flaky, service=service, db=sqlite_db, policy=policy)
    async with broker:
        await broker.start()
        await JetStreamPublisher(broker).publish_event(cycle())

        async def three() -> bool:
            return len(attempts) >= 3

        await wait_for(three)
        await asyncio.sleep(1.0)  # a fourth delivery would show up here

    assert len(attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # The server holds the message back for the NAK delay: 0.4 s, then 0.8 s.
    assert gaps[0] >= 0.35 and gaps[1] >= 0.75
    assert await dead_letters(sqlite_db) == []


async def test_exhausted_and_permanent_failures_are_dead_lettered(private_nats, sqlite_db):
    calls: dict[str, int] = {}

    async def failing(event: CycleRequested, delivery) -> None:
        calls[event.task_name] = calls.get(event.task_name, 0) + 1
        if event.task_name == "permanent":
            raise PermanentError("spec violates a rule")
        raise RuntimeError("always broken")

    policy = ConsumerPolicy(max_deliver=3, ack_wait_s=10, backoff_base_s=0.1)
    broker = broker_for(private_nats.url)
    service = f"svc{uuid.uuid4().hex[:6]}"
    subscribe(broker, CycleRequested, failing, service=service, db=sqlite_db, policy=policy)
    async with broker:
        await broker.start()
        await JetStreamPublisher(broker).publish_event(cycle("permanent"))
        await JetStreamPublisher(broker).publish_event(cycle("transient"))

        async def both() -> bool:
            return len(await dead_letters(sqlite_db)) == 2

        await wait_for(both)
        await asyncio.sleep(0.5)

    kinds = {json.loads(d.payload_excerpt)["task_name"]: d for d in await dead_letters(sqlite_db)}
    assert kinds["permanent"].error_kind == "permanent"
    assert kinds["permanent"].deliveries == 1
    assert kinds["transient"].error_kind == "exhausted"
    assert kinds["transient"].deliveries == 3
    assert "always broken" in kinds["transient"].reason
    assert calls == {"permanent": 1, "transient": 3}


async def test_heartbeat_keeps_a_slow_handler_from_redelivery(private_nats, sqlite_db):
    deliveries: list[tuple[str, int]] = []

    current: list[str] = []

    async def slow(event: CycleRequested, delivery) -> None:
        if event.task_name != current[-1]:
            return
        deliveries.append((event.task_name, delivery.number))
        if event.task_name == "beating":
            async with delivery.heartbeat(0.3):
                await asyncio.sleep(3.0)
        else:
            await asyncio.sleep(3.0)

    # Two replicas of the same consumer: a message whose ack_wait lapses goes to the idle one.
    policy = ConsumerPolicy(max_deliver=5, ack_wait_s=1.0)
    for task, expected in (("beating", [1]), ("silent", [1, 2])):
        current.append(task)
        service = f"svc{uuid.uuid4().hex[:6]}"
        replicas = [broker_for(private_nats.url) for _ in range(2)]
        for broker in replicas:
            subscribe(broker, CycleRequested, slow, service=service, db=sqlite_db, policy=policy)
        async with replicas[0], replicas[1]:
            await replicas[0].start()
            await replicas[1].start()
            await JetStreamPublisher(replicas[0]).publish_event(cycle(task))
            await asyncio.sleep(4.0)
        assert sorted(n for t, n in deliveries if t == task)[:2] == expected, task


async def test_durable_consumers_have_finite_redelivery(private_nats, sqlite_db):
    async def handle(event, delivery) -> None:
        pass

    policy = ConsumerPolicy(max_deliver=4, ack_wait_s=7)
    broker = broker_for(private_nats.url)
    durable = subscribe(broker, CycleRequested, handle, service="svc", db=sqlite_db, policy=policy)
    async with broker:
        await broker.start()
    nc = await nats.connect(private_nats.url)
    try:
        info = await nc.jetstream().consumer_info(STREAM_NAME, durable)
    finally:
        await nc.close()
    assert info.config.max_deliver == 4
    assert info.config.ack_wait == 7
    assert info.config.filter_subject == CycleRequested.subject
    assert info.config.ack_policy == "explicit"
