"""Registers a catalog event's durable pull consumer on a FastStream router."""

from __future__ import annotations

from faststream.middlewares import AckPolicy as FastStreamAck
from faststream.nats import NatsBroker, NatsRouter, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.db import Database
from shared.events import ConsumerPolicy

from .broker import stream_ref
from .consumer import E, Handler, durable_name, process


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


def subscribe(
    router: NatsRouter | NatsBroker,
    event_cls: type[E],
    handler: Handler[E],
    *,
    service: str,
    db: Database,
    policy: ConsumerPolicy | None = None,
    batch_size: int | None = None,
) -> str:
    """Consume `event_cls` durably as `service`; returns the durable consumer name."""
    policy = policy or ConsumerPolicy()
    consumer = durable_name(service, event_cls)
    config = ConsumerConfig(
        durable_name=consumer,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        max_deliver=policy.max_deliver,
        ack_wait=policy.ack_wait_s,
        filter_subject=event_cls.subject,
    )

    async def on_message(msg: NatsMessage) -> None:
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
        title=consumer,
        description=(event_cls.__doc__ or "").strip() or None,
    )(on_message)
    return consumer
