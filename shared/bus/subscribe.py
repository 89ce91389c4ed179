"""A catalog event's durable pull consumer.

`subscribe`: one message per handler call, registered on a FastStream router (stages,
anything slow or with side effects).
`subscribe_batch`: a pulled batch per transaction (high-volume, light events), a fetch loop
of its own that the service runs next to its relay.
"""

from __future__ import annotations

from typing import Any

from faststream.middlewares import AckPolicy as FastStreamAck
from faststream.nats import NatsBroker, NatsRouter, PullSub
from faststream.nats.message import NatsMessage

from shared.db import Database
from shared.events import ConsumerPolicy
from shared.logs import get_logger

from .batch import BatchHandler
from .broker import inbox_prefix, stream_ref
from .consumer import E, Handler, consumer_config, durable_name, process
from .pull import BatchConsumer

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


async def _as_is(msg: NatsMessage) -> NatsMessage:
    # The handler's body is the message itself, so the handler takes no `Context` parameter:
    # FastStream (fast_depends) resolves each such parameter by running a sync function in a
    # worker thread, once per message, which measured as half of FastStream's CPU time per
    # message (bench/README.md). It also skips a JSON decode the policy does not use: the
    # event is validated from the raw bytes.
    return msg


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
    config = consumer_config(consumer, event_cls, policy, from_now=from_now)

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
