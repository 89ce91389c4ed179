"""Authorization on the bus, enforced by a real nats-server started with the configuration
that shared.bus.auth derives from the catalog: a forged event is refused by the server and
never reaches a consumer; the owner's event is delivered to, and acked by, its consumer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import pytest
from nats.aio.client import Client

from shared.bus import JetStreamPublisher, make_broker, subscribe, subscribe_batch
from shared.bus.broker import connect_options
from shared.bus.consumer import durable_name
from shared.events import CATALOG, STREAM_NAME, ArtifactRef
from shared.events.catalog import (
    IDENTITIES,
    ChatMessage,
    TaskRegistered,
    TrafficLogged,
    TrainingProgressed,
)
from shared.events.values import ROUTES_BUCKET
from tests.fixtures.infra import AuthNats

SPEC = ArtifactRef(uri="file:///spec.yaml", sha256="0" * 64, size_bytes=1)


def forged(version: int = 99) -> TaskRegistered:
    return TaskRegistered(
        cycle_id=None, task_name="triage", task_version=version, spec=SPEC, producer="ops-cli"
    )


@asynccontextmanager
async def connected(bus: AuthNats, identity: str | None) -> AsyncIterator[tuple[Client, list]]:
    """A plain nats-py connection as `identity`, and the errors the server sent it."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    credentials = bus.credentials.get(identity) if identity else None
    nc = await nats.connect(
        bus.url,
        error_cb=on_error,
        allow_reconnect=False,
        **connect_options(bus.url, credentials),
    )
    try:
        yield nc, errors
    finally:
        await nc.close()


async def publish(nc: Client, event, timeout: float = 1.0):
    headers = {"Nats-Msg-Id": str(event.event_id)}
    return await nc.jetstream().publish(
        event.subject, event.model_dump_json().encode(), headers=headers, timeout=timeout
    )


async def pull_one(nc: Client, identity: str, timeout: float = 1.0) -> list:
    """What the identity's durable consumer of task.registered has for it, acked."""
    durable = durable_name(identity, TaskRegistered)
    sub = await nc.jetstream().pull_subscribe(TaskRegistered.subject, durable, stream=STREAM_NAME)
    try:
        messages = await sub.fetch(10, timeout=timeout)
    except TimeoutError:  # nats-py raises its own subclass, or the builtin past the deadline
        return []
    for msg in messages:
        await msg.ack_sync()
    return messages


def violations(errors: list[str], kind: str, subject: str) -> bool:
    # nats-py lowercases the server's message, subject included.
    wanted = f'permissions violation for {kind} to "{subject}"'.lower()
    return any(wanted in e.lower() for e in errors)


async def refused(errors: list[str], kind: str, subject: str, timeout: float = 5.0) -> bool:
    """The server's -ERR for a refused PUB or SUB may come after the PONG of a flush."""
    deadline = time.monotonic() + timeout
    while not violations(errors, kind, subject) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return violations(errors, kind, subject)


async def test_a_forged_event_is_refused_by_the_server_and_never_consumed(auth_nats: AuthNats):
    async with connected(auth_nats, "trainer") as (nc, errors):
        with pytest.raises(TimeoutError):  # no stream ever saw it, so no ack came
            await publish(nc, forged())
        assert await refused(errors, "publish", TaskRegistered.subject), errors

    async with connected(auth_nats, "synth-data") as (nc, errors):
        assert await pull_one(nc, "synth-data") == []
        assert errors == []
    async with connected(auth_nats, "ops") as (nc, _):
        info = await nc.jetstream().stream_info(STREAM_NAME)
        assert info.state.messages == 0


async def test_the_owner_publishes_and_the_consumer_receives_and_acks(auth_nats: AuthNats):
    event = forged(version=2)
    async with connected(auth_nats, "ops") as (nc, errors):
        ack = await publish(nc, event)
        assert ack.stream == STREAM_NAME and errors == []

    async with connected(auth_nats, "synth-data") as (nc, errors):
        (msg,) = await pull_one(nc, "synth-data")
        assert TaskRegistered.model_validate_json(msg.data) == event
        durable = durable_name("synth-data", TaskRegistered)
        info = await nc.jetstream().consumer_info(STREAM_NAME, durable)
        assert info.ack_floor.stream_seq == ack.seq and info.num_ack_pending == 0
        assert errors == []


async def test_a_service_reads_only_what_it_consumes(auth_nats: AuthNats):
    async with connected(auth_nats, "trainer") as (nc, errors):
        # A core subscription to someone else's event, or to another's inbox, is refused.
        for subject in (TaskRegistered.subject, "distillery.>", "_INBOX_synth-data.>"):
            await nc.subscribe(subject)
            assert await refused(errors, "subscription", subject), (subject, errors)
        # So is a durable consumer of its own on that event, and pulling from synth-data's.
        with pytest.raises(TimeoutError):
            await nc.jetstream().pull_subscribe(
                TaskRegistered.subject,
                durable_name("trainer", TaskRegistered),
                stream=STREAM_NAME,
            )
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{STREAM_NAME}.synth-data--task-registered-v1"
        with pytest.raises(TimeoutError):
            await nc.request(next_subject, b"1", timeout=0.5)
        assert await refused(errors, "publish", next_subject), errors


async def test_unauthenticated_and_wrong_password_connections_are_refused(auth_nats: AuthNats):
    for options in ({}, {"user": "trainer", "password": "not-the-password"}):
        with pytest.raises(Exception, match="Authorization Violation"):
            await asyncio.wait_for(
                nats.connect(
                    auth_nats.url, allow_reconnect=False, max_reconnect_attempts=0, **options
                ),
                10,
            )


async def test_each_identity_may_publish_exactly_what_the_catalog_says(auth_nats: AuthNats):
    async with connected(auth_nats, "ops") as (ops, _):
        for identity in sorted(IDENTITIES):
            allowed = {s for s, cls in CATALOG.items() if identity in cls.producers}
            refused, landed = await publish_everything(auth_nats, ops.jetstream(), identity)
            assert (refused, landed) == (set(CATALOG) - allowed, allowed), identity


async def publish_everything(bus: AuthNats, js, identity: str) -> tuple[set[str], set[str]]:
    """Core-publish every catalog subject as `identity`: (refused, stored) subjects."""
    before = await stored_per_subject(js)
    async with connected(bus, identity) as (nc, errors):
        for subject in CATALOG:
            await nc.publish(subject, b"{}")
        await nc.flush()

        async def outcome() -> tuple[set[str], set[str]]:
            after = await stored_per_subject(js)
            refused = {s for s in CATALOG if violations(errors, "publish", s)}
            return refused, {s for s in CATALOG if after.get(s, 0) > before.get(s, 0)}

        # Refusals and stored messages arrive on their own time: wait until every subject
        # is one or the other (or time is up, and the caller sees what is missing).
        deadline = time.monotonic() + 5
        while len(set.union(*await outcome())) < len(CATALOG) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return await outcome()


async def stored_per_subject(js) -> dict[str, int]:
    info = await js.stream_info(STREAM_NAME, subjects_filter=">")
    return dict(info.state.subjects or {})


async def test_the_bus_kernel_connects_as_its_identity(auth_nats: AuthNats, sqlite_db):
    """make_broker + subscribe + JetStreamPublisher, the path every service takes."""
    seen: list[TaskRegistered] = []

    async def handle(event: TaskRegistered, _delivery) -> None:
        seen.append(event)

    creds = auth_nats.credentials
    consumer = make_broker(auth_nats.url, client_name="synth-data", credentials=creds["synth-data"])
    subscribe(consumer, TaskRegistered, handle, service="synth-data", db=sqlite_db)
    ops = make_broker(auth_nats.url, client_name="ops", credentials=creds["ops"])
    trainer = make_broker(auth_nats.url, client_name="trainer", credentials=creds["trainer"])
    async with consumer, ops, trainer:
        await consumer.start()
        await ops.connect()
        await trainer.connect()
        with pytest.raises(TimeoutError):
            await JetStreamPublisher(trainer, timeout_s=1.0).publish_event(forged())
        progress = TrainingProgressed(
            cycle_id=uuid.uuid4(), run_id=uuid.uuid4(), step=1, total_steps=2, producer="trainer"
        )
        await JetStreamPublisher(trainer).publish_event(progress)
        owned = forged(version=3)
        await JetStreamPublisher(ops).publish_event(owned)
        deadline = time.monotonic() + 15
        while not seen and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert seen == [owned]
    log = auth_nats.server.log_path.read_text()
    # The only refusal the server logged is the forged publish.
    refused = [line for line in log.splitlines() if "Violation" in line]
    assert len(refused) == 1 and TaskRegistered.subject in refused[0], refused


async def test_the_batched_consumer_reads_as_its_identity(auth_nats: AuthNats, sqlite_db):
    """An outside app feeds traffic in as "ingest"; the feedback-collector pulls it in batches."""
    seen: list[TrafficLogged] = []

    async def handle(_uow, events: list[TrafficLogged]) -> None:
        seen.extend(events)

    creds = auth_nats.credentials
    collector = make_broker(
        auth_nats.url, client_name="fc", credentials=creds["feedback-collector"]
    )
    ingest = make_broker(auth_nats.url, client_name="app", credentials=creds["ingest"])
    consumer = subscribe_batch(
        TrafficLogged, handle, service="feedback-collector", db=sqlite_db, poll_s=0.2
    )
    traffic = TrafficLogged(
        request_id=uuid.uuid4(),
        task_name="triage",
        arm="student",
        messages=[ChatMessage(role="user", content="hi")],
        completion="hello",
        latency_ms=12.5,
        producer="gateway",
    )
    stop = asyncio.Event()
    async with collector, ingest:
        await ingest.connect()
        running = asyncio.create_task(consumer.run(collector, stop))
        await JetStreamPublisher(ingest).publish_event(traffic)
        deadline = time.monotonic() + 15
        while not seen and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await running
    assert seen == [traffic]
    assert "Violation" not in auth_nats.server.log_path.read_text()


async def test_only_the_deployer_keeps_and_watches_the_routes_bucket(auth_nats: AuthNats):
    """What the control plane (create, put) and every gateway (get, watch) do, as the
    deployer; any other identity is refused on the bucket's stream."""
    async with connected(auth_nats, "deployer") as (nc, errors):
        kv = await nc.jetstream(timeout=5).create_key_value(bucket=ROUTES_BUCKET, history=5)
        await kv.put("toy", b"route-1")
        assert (await kv.get("toy")).value == b"route-1"
        watcher = await kv.watchall()
        assert (await watcher.updates(timeout=5)).value == b"route-1"
        await kv.put("toy", b"route-2")
        # An initial-values marker (None) may come first; then the new revision.
        got = await watcher.updates(timeout=5)
        got = got if got is not None else await watcher.updates(timeout=5)
        assert got.value == b"route-2"
        await watcher.stop()
        assert errors == []
    async with connected(auth_nats, "evaluator") as (nc, errors):
        with pytest.raises(TimeoutError):
            await nc.jetstream(timeout=1).key_value(ROUTES_BUCKET)
        await nc.publish(f"$KV.{ROUTES_BUCKET}.toy", b"forged")
        await nc.flush()
        assert await refused(errors, "publish", f"$KV.{ROUTES_BUCKET}.toy")
