"""The stray auditor: a message on a subject of the stream that no catalog event has (a `.v2`
nobody consumes yet, a typo, a subject made up under `distillery.`) is recorded, never lost.

Each consumer filters on its own catalog subject, so such a message reaches nobody and would
only age out of the stream. The auditor is one durable consumer on the whole stream: it reads
every message's subject (not its body) and, for a stray, counts it
(`distillery_bus_stray_messages_total`) and commits a `deadletter.recorded` naming the
subject, in the outbox, relayed like any service's events. Acks are cumulative (AckPolicy.ALL):
one ack per pulled batch, after the batch's records committed, so reading the whole stream
costs one round trip per batch. A batch whose records could not be written is not acked and
comes back after `ack_wait`.

Catalog events that no service consumes (cycle.failed, deadletter.recorded, …) are not strays:
the catalog declares them, and tooling reads them from the outbox.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import suppress

from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import Counter

from shared.db import Database
from shared.events import CATALOG, STREAM_NAME
from shared.events.catalog import DeadLettered
from shared.events.stream import STREAM_SUBJECTS
from shared.logs import get_logger

log = get_logger(__name__)

AUDITOR = "auditor"  # its bus identity and outbox producer (permissions in shared/bus/auth.py)
DURABLE = "auditor--strays"
STRAY_NS = uuid.UUID("c7d1a3e0-52f4-4b59-8f0e-3a1d6b2c9e47")
# No subject label: a hostile sender would pick the label values and grow the series forever.
STRAYS = Counter(
    "distillery_bus_stray_messages_total",
    "Messages on a stream subject that no catalog event has; each is also dead-lettered.",
)


def is_stray(subject: str) -> bool:
    return subject not in CATALOG


def stray_record(msg: Msg) -> DeadLettered:
    meta = msg.metadata
    headers = msg.headers or {}
    return DeadLettered(
        # One record per stream message, however often it is redelivered.
        event_id=uuid.uuid5(STRAY_NS, f"{STREAM_NAME}:{meta.sequence.stream}"),
        cycle_id=_cycle_id(msg.data),
        producer=AUDITOR,
        consumer=DURABLE,
        original_subject=msg.subject[:256],
        original_event_id=(headers.get("Nats-Msg-Id") or None) and headers["Nats-Msg-Id"][:64],
        error_kind="validation",
        reason=(
            f"no event in the catalog has subject {msg.subject[:256]!r}, so no consumer reads "
            "it; recorded by the stray auditor"
        ),
        deliveries=max(1, meta.num_delivered),
        payload_excerpt=msg.data[:8192].decode("utf-8", "replace"),
    )


def _cycle_id(body: bytes) -> uuid.UUID | None:
    # Best effort, so `cycle status` shows the stray next to its cycle when it names one.
    with suppress(ValueError, TypeError, AttributeError):
        return uuid.UUID(str(json.loads(body).get("cycle_id")))
    return None


class StrayAuditor:
    """Runs next to the auditor's relay (`ServiceContext.add_batch_consumer`)."""

    name = DURABLE

    def __init__(self, db: Database, *, batch_size: int = 256, poll_s: float = 1.0) -> None:
        self.db = db
        self.batch_size = batch_size
        self.poll_s = poll_s

    def consumer_config(self, ack_wait_s: float = 30.0) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=AckPolicy.ALL,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait_s,
            filter_subject=STREAM_SUBJECTS[0],
        )

    async def run(self, broker: NatsBroker, stop: asyncio.Event) -> None:
        js = (await broker.connect()).jetstream()
        subscription = None
        while subscription is None:
            try:
                subscription = await js.pull_subscribe(
                    STREAM_SUBJECTS[0],
                    durable=DURABLE,
                    stream=STREAM_NAME,
                    config=self.consumer_config(),
                )
            except NatsError as exc:
                log.warning("stray auditor not subscribed yet", error=repr(exc))
                if await _stopped(stop, self.poll_s):
                    return
        try:
            while not stop.is_set():
                try:
                    messages = await subscription.fetch(self.batch_size, timeout=self.poll_s)
                except TimeoutError:
                    continue
                except NatsError as exc:  # a broker outage is waited out
                    log.warning("stray auditor fetch failed", error=repr(exc))
                    await _stopped(stop, self.poll_s)
                    continue
                try:
                    await self.audit(messages)
                except Exception as exc:  # not acked: the batch comes back after ack_wait
                    log.warning("stray records not written", error=repr(exc))
        finally:
            with suppress(Exception):
                await subscription.unsubscribe()

    async def audit(self, messages: list[Msg]) -> int:
        """Record the strays of one batch, then ack the whole batch at once; returns strays."""
        strays = [stray_record(m) for m in messages if is_stray(m.subject)]
        if strays:
            async with self.db.uow() as uow:
                await uow.publish(*strays)
                await uow.commit()
            STRAYS.inc(len(strays))
            for record in strays:
                log.error("stray message", subject=record.original_subject, reason=record.reason)
        if messages:
            await messages[-1].ack()  # AckPolicy.ALL: acknowledges every earlier message too
        return len(strays)


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
