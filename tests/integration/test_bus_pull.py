"""The batched consumer's fetch (shared.bus.pull.Puller) against a real nats-server: a backlog
comes at once in batches, an idle fetch waits and ends empty, and what a lingering pull brings
after its fetch returned is handed out by the next fetch, never lost."""

from __future__ import annotations

import asyncio
import time
import uuid

import nats
from nats.js.api import AckPolicy, ConsumerConfig

from shared.bus.pull import Puller
from shared.events import STREAM_NAME
from shared.events.catalog import CycleRequested

DURABLE = "test--pull"


async def setup(url: str):
    nc = await nats.connect(url)
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name=DURABLE,
        name=DURABLE,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30,
        filter_subject=CycleRequested.subject,
    )
    await js.add_consumer(STREAM_NAME, config=config)
    puller = Puller(nc, DURABLE)
    await puller.start()
    return nc, js, puller


async def publish(js, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        event = CycleRequested(cycle_id=uuid.uuid4(), task_name="t", producer="test")
        await js.publish(event.subject, event.model_dump_json().encode())
        ids.append(str(event.event_id))
    return ids


def ids_of(messages) -> list[str]:
    return [str(CycleRequested.model_validate_json(m.data).event_id) for m in messages]


async def test_a_backlog_comes_in_full_batches_then_an_idle_fetch_is_empty(private_nats):
    nc, js, puller = await setup(private_nats.url)
    try:
        sent = await publish(js, 25)
        got = []
        for expected in (10, 10, 5):
            batch = await puller.fetch(10, 2.0)
            assert len(batch) == expected
            got += ids_of(batch)
            for m in batch:
                await m.ack()
        assert got == sent  # in order, each once
        started = time.monotonic()
        assert await puller.fetch(10, 0.5) == []
        assert 0.4 < time.monotonic() - started < 3  # it waited for new messages, then gave up
    finally:
        await puller.stop()
        await nc.close()


async def test_messages_a_lingering_pull_brings_later_go_to_the_next_fetch(private_nats):
    nc, js, puller = await setup(private_nats.url)
    try:
        fetching = asyncio.create_task(puller.fetch(10, 3.0))
        await asyncio.sleep(0.3)  # the fetch found nothing and now lingers
        sent = await publish(js, 6)
        first = await fetching
        assert first  # it returned with the first message(s), not after the whole wait
        rest = []
        deadline = time.monotonic() + 5
        while len(first) + len(rest) < len(sent) and time.monotonic() < deadline:
            rest += await puller.fetch(10, 0.5)
        assert ids_of(first) + ids_of(rest) == sent
        for m in first + rest:
            await m.ack()
        info = await js.consumer_info(STREAM_NAME, DURABLE)
        assert info.num_pending == 0 and info.num_redelivered == 0
    finally:
        await puller.stop()
        await nc.close()
