"""A catalog event's durable pull consumer.

`subscribe`: one message per handler call, registered on a FastStream router (stages,
anything slow or with side effects).
`subscribe_batch`: a pulled batch per transaction (high-volume, light events), a fetch loop
of its own that the service runs next to its relay.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

from faststream.middlewares import AckPolicy as FastStreamAck
from faststream.nats import NatsBroker, NatsRouter, PullSub
from faststream.nats.message import NatsMessage
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.db import Database
from shared.events import STREAM_NAME, ConsumerPolicy
from shared.logs import get_logger

from .batch import AllInProgress, BatchHandler, process_batch
from .broker import inbox_prefix, stream_ref
from .consumer import E, Handler, durable_name, process
from .heartbeat import heartbeat

log = get_logger(__name__)


class _JetStreamRaw:
    """Adapts FastStream's NATS message to the policy's RawMessage."""

    def __init__(self, msg: NatsMessage) -> None:
        self._msg = msg
        meta = msg.raw_message.metadata
        self.subject = msg.raw_message.subject
        self.body = msg.body
        self.delivery = meta.num_delivered
        self.stream_sequence = meta.sequence.stream

    async def ack(self) -> None:
        await self._msg.ack()

    async def nack(self, delay: float) -> None:
        await self._msg.nack(delay=delay)

    async def reject(self) -> None:
        await self._msg.reject()

    async def in_progress(self) -> None:
        await self._msg.in_progress()


class NatsRawMessage:
    """Adapts a nats-py JetStream message (one of a pulled batch) to the policy's RawMessage.

    The delivery count and stream sequence are read when asked for: nats-py parses them out
    of the reply subject, which profiled at about a tenth of the trace consumer's time per
    message, and a batch that commits never asks.
    """

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.subject = msg.subject
        self.body = msg.data

    @property
    def delivery(self) -> int:
        return self._msg.metadata.num_delivered

    @property
    def stream_sequence(self) -> int:
        return self._msg.metadata.sequence.stream

    async def ack(self) -> None:
        await self._msg.ack()

    async def nack(self, delay: float) -> None:
        await self._msg.nak(delay=delay)

    async def reject(self) -> None:
        await self._msg.term()

    async def in_progress(self) -> None:
        await self._msg.in_progress()


async def _as_is(msg: NatsMessage) -> NatsMessage:
    # The handler's body is the message itself, so the handler takes no `Context` parameter:
    # FastStream (fast_depends) resolves each such parameter by running a sync function in a
    # worker thread, once per message, which measured as half of FastStream's CPU time per
    # message (bench/README.md). It also skips a JSON decode the policy does not use: the
    # event is validated from the raw bytes.
    return msg


def _consumer_config(
    consumer: str, event_cls: type[E], policy: ConsumerPolicy, *, from_now: bool = False
) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=consumer,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.NEW if from_now else DeliverPolicy.ALL,
        max_deliver=policy.max_deliver,
        ack_wait=policy.ack_wait_s,
        filter_subject=event_cls.subject,
    )


def subscribe(
    router: NatsRouter | NatsBroker,
    event_cls: type[E],
    handler: Handler[E],
    *,
    service: str,
    db: Database,
    policy: ConsumerPolicy | None = None,
    batch_size: int | None = None,
    from_now: bool = False,
) -> str:
    """Consume `event_cls` durably as `service`; returns the durable consumer name.
    `from_now`: a durable created now starts at new events, not the stream's history."""
    policy = policy or ConsumerPolicy()
    consumer = durable_name(service, event_cls)
    config = _consumer_config(consumer, event_cls, policy, from_now=from_now)

    # `msg` is the message itself (see _as_is), left untyped so fast_depends does not validate it.
    async def on_message(msg: Any) -> None:
        await process(
            _JetStreamRaw(msg),
            event_cls,
            handler,
            service=service,
            consumer=consumer,
            db=db,
            policy=policy,
        )

    router.subscriber(
        event_cls.subject,
        stream=stream_ref(),
        durable=consumer,
        config=config,
        pull_sub=PullSub(batch_size=batch_size or policy.batch_size, timeout=1.0),
        ack_policy=FastStreamAck.MANUAL,
        decoder=_as_is,
        # Deliveries come to this service's own inbox, so its bus user needs no `_INBOX.>`
        # (which would let it read other services' deliveries).
        inbox_prefix=f"{inbox_prefix(service)}.".encode(),
        title=consumer,
        description=(event_cls.__doc__ or "").strip() or None,
    )(on_message)
    return consumer


class BatchConsumer:
    """A durable pull consumer applying a pulled batch per transaction (see `shared.bus.batch`).

    It runs its own fetch loop on the broker's connection instead of FastStream's batch
    subscriber (faststream 0.7.8): that one keeps fetching until the batch is full or its
    timeout has passed, catching only nats' own TimeoutError. Close to the deadline nats-py
    raises the builtin one instead (seen here within a few hundred messages at a 50 ms
    timeout); the loop then dies holding the messages it fetched, and they wait out
    `ack_wait` (30 s) before they are redelivered.
    One fetch per batch avoids that and needs no timeout for latency: nats-py returns as soon
    as messages are there, with up to `batch_size` of them, so a batch grows with the backlog.
    """

    def __init__(
        self,
        event_cls: type[E],
        handler: BatchHandler[E],
        *,
        service: str,
        db: Database,
        policy: ConsumerPolicy,
        batch_size: int,
        poll_s: float,
        claim: bool = True,
    ) -> None:
        self.claim = claim
        self.event_cls = event_cls
        self.handler = handler
        self.service = service
        self.db = db
        self.policy = policy
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.name = durable_name(service, event_cls)

    def consumer_config(self) -> ConsumerConfig:
        return _consumer_config(self.name, self.event_cls, self.policy)

    async def run(self, broker: NatsBroker, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; a batch in progress is finished (committed, acked).

        The next batch is fetched while this one is applied: the fetch's round trip overlaps
        the commit's instead of following it. Batches are still applied one after the other.
        """
        connection = await broker.connect()
        subscription = await self._subscribe(connection.jetstream(), stop)
        ahead = asyncio.create_task(self._fetch(subscription, stop))
        try:
            while True:
                messages = await ahead  # once `stop` is set, at most one more batch (poll_s)
                if stop.is_set():
                    await self._apply(messages)
                    break
                ahead = asyncio.create_task(self._fetch(subscription, stop))
                # The next batch is heartbeated too: a slow commit must not let its
                # ack_wait run out and count a delivery against it.
                async with heartbeat(_FetchedAhead(ahead), self.policy.ack_wait_s / 3):
                    await self._apply(messages)
        finally:
            # Cancelled rather than stopped: a batch fetched ahead and never applied is
            # redelivered after ack_wait; nothing is lost.
            ahead.cancel()
            with suppress(Exception):
                await subscription.unsubscribe()

    async def _fetch(self, subscription, stop: asyncio.Event) -> list[Msg]:
        try:
            return await subscription.fetch(self.batch_size, timeout=self.poll_s)
        except TimeoutError:  # nothing to do (nats' TimeoutError subclasses it)
            return []
        except NatsError as exc:  # a broker outage is waited out, not fatal
            log.warning("batch fetch failed", consumer=self.name, error=repr(exc))
            await _sleep_unless(stop, self.poll_s)
            return []

    async def _apply(self, messages: list[Msg]) -> None:
        if not messages:
            return
        try:
            await process_batch(
                [NatsRawMessage(m) for m in messages],
                self.event_cls,
                self.handler,
                service=self.service,
                consumer=self.name,
                db=self.db,
                policy=self.policy,
                claim=self.claim,
            )
        except Exception as exc:  # e.g. a NAK that could not be sent; the loop must go on
            log.warning("batch not settled", consumer=self.name, error=repr(exc))

    async def _subscribe(self, js: JetStreamContext, stop: asyncio.Event):
        while True:
            try:
                return await js.pull_subscribe(
                    self.event_cls.subject,
                    durable=self.name,
                    stream=STREAM_NAME,
                    config=self.consumer_config(),
                )
            except NatsError as exc:
                if stop.is_set():
                    raise
                log.warning("batch consumer not created yet", consumer=self.name, error=repr(exc))
                await _sleep_unless(stop, self.poll_s)


class _FetchedAhead:
    """The batch a fetch task brought, as one heartbeat target (nothing while it fetches)."""

    def __init__(self, fetch: asyncio.Task) -> None:
        self.fetch = fetch

    async def in_progress(self) -> None:
        if self.fetch.done() and not self.fetch.cancelled() and self.fetch.exception() is None:
            await AllInProgress(self.fetch.result()).in_progress()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def subscribe_batch(
    event_cls: type[E],
    handler: BatchHandler[E],
    *,
    service: str,
    db: Database,
    policy: ConsumerPolicy | None = None,
    batch_size: int = 256,
    poll_s: float = 1.0,
    claim: bool = True,
) -> BatchConsumer:
    """Consume `event_cls` durably as `service`, up to `batch_size` events per transaction.

    `handler(uow, events)` gets the events not applied before, already claimed in `uow`; the
    kernel commits and then acks. Start it with `await consumer.run(broker, stop)` (a service
    registers it with `ServiceContext.add_batch_consumer`, which does so after startup).
    `poll_s` is how long an idle fetch waits; it bounds how fast `stop` is noticed, not latency.
    `claim=False`: no inbox rows; the handler's effect is keyed by the event id (see
    `shared.bus.batch`).
    """
    return BatchConsumer(
        event_cls,
        handler,
        service=service,
        db=db,
        policy=policy or ConsumerPolicy(),
        batch_size=batch_size,
        poll_s=poll_s,
        claim=claim,
    )
