"""The one error policy every durable consumer follows.

- a payload that fails validation: dead-letter with the reason, terminate; keep consuming
- PermanentError: dead-letter with the reason, terminate
- anything else: NAK with exponential delay; on the last allowed delivery, dead-letter
  ("exhausted") and terminate, so nothing disappears silently
- success: ack

FastStream's own policy is switched off (AckPolicy.MANUAL): it rejects on the first error, and
an undelayed NAK would spend max_deliver in milliseconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, TypeVar

import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from shared.db import Database
from shared.events import ConsumerPolicy, Event
from shared.events.catalog import DeadLettered
from shared.logs import get_logger
from shared.metrics import HANDLE_SECONDS, MESSAGES

from .errors import GaveUp, PermanentError
from .heartbeat import heartbeat

log = get_logger(__name__)
E = TypeVar("E", bound=Event)
DEAD_LETTER_NS = uuid.UUID("5b0f3e52-31f7-4a8e-9a86-9c6d0c1b0d11")


class RawMessage(Protocol):
    """What the policy needs of a JetStream message; NATS-free so it can be tested alone."""

    subject: str
    body: bytes
    delivery: int
    stream_sequence: int

    async def ack(self) -> None: ...
    async def nack(self, delay: float) -> None: ...
    async def reject(self) -> None: ...
    async def in_progress(self) -> None: ...


@dataclass
class Delivery:
    """Handed to handlers: which attempt this is, and a heartbeat for long work."""

    message: RawMessage
    consumer: str
    policy: ConsumerPolicy

    @property
    def number(self) -> int:
        return self.message.delivery

    def heartbeat(self, interval_s: float | None = None) -> AbstractAsyncContextManager[None]:
        return heartbeat(self.message, interval_s or self.policy.ack_wait_s / 3)


Handler = Callable[[E, Delivery], Awaitable[None]]


def durable_name(service: str, event_cls: type[Event]) -> str:
    return f"{service}--{event_cls.subject.removeprefix('distillery.').replace('.', '-')}"


def dead_letter_record(
    raw: RawMessage,
    *,
    service: str,
    consumer: str,
    kind: str,
    reason: str,
    event: Event | None = None,
) -> DeadLettered:
    # Deterministic id: a redelivered message that is dead-lettered again is one record.
    return DeadLettered(
        event_id=uuid.uuid5(DEAD_LETTER_NS, f"{consumer}:{raw.stream_sequence}"),
        cycle_id=event.cycle_id if event else None,
        causation_id=event.event_id if event else None,
        producer=service,
        consumer=consumer,
        original_subject=raw.subject,
        original_event_id=str(event.event_id) if event else None,
        error_kind=kind,
        reason=reason[:4000],
        deliveries=max(1, raw.delivery),
        payload_excerpt=raw.body[:8192].decode("utf-8", "replace"),
    )


async def dead_letter(
    db: Database,
    raw: RawMessage,
    *,
    service: str,
    consumer: str,
    kind: str,
    reason: str,
    event: Event | None = None,
) -> None:
    record = dead_letter_record(
        raw, service=service, consumer=consumer, kind=kind, reason=reason, event=event
    )
    async with db.uow() as uow:
        await uow.publish(record)
        await uow.commit()
    log.error("dead-lettered", consumer=consumer, kind=kind, reason=reason[:500])


async def process(
    raw: RawMessage,
    event_cls: type[E],
    handler: Handler[E],
    *,
    service: str,
    consumer: str,
    db: Database,
    policy: ConsumerPolicy,
) -> str:
    """Apply the policy to one message; returns the outcome (for metrics and tests)."""
    try:
        event = event_cls.model_validate_json(raw.body)
    except ValidationError as exc:
        return await _give_up(
            raw, db, policy, service, consumer, "validation", validation_reason(exc), None
        )

    structlog.contextvars.bind_contextvars(
        cycle_id=str(event.cycle_id), event_id=str(event.event_id), consumer=consumer
    )
    started = time.perf_counter()
    try:
        await handler(event, Delivery(raw, consumer, policy))
    except GaveUp as exc:
        await raw.reject()
        return _count(consumer, f"dead_lettered_{exc.kind}")
    except PermanentError as exc:
        return await _give_up(raw, db, policy, service, consumer, "permanent", f"{exc!r}", event)
    except Exception as exc:
        if raw.delivery >= policy.max_deliver:
            reason = f"gave up after {raw.delivery} deliveries; last error: {exc!r}"
            return await _give_up(raw, db, policy, service, consumer, "exhausted", reason, event)
        delay = policy.backoff(raw.delivery)
        log.warning("handler failed; will retry", error=repr(exc), delay_s=delay)
        await raw.nack(delay)
        return _count(consumer, "retried")
    finally:
        HANDLE_SECONDS.labels(consumer).observe(time.perf_counter() - started)
        structlog.contextvars.unbind_contextvars("cycle_id", "event_id", "consumer")
    await raw.ack()
    return _count(consumer, "acked")


async def _give_up(
    raw: RawMessage,
    db: Database,
    policy: ConsumerPolicy,
    service: str,
    consumer: str,
    kind: str,
    reason: str,
    event: Event | None,
) -> str:
    try:
        await dead_letter(
            db, raw, service=service, consumer=consumer, kind=kind, reason=reason, event=event
        )
    except Exception as exc:
        # Without its dead-letter record the message must not be dropped: try again later.
        log.warning("dead-letter write failed; will retry", error=repr(exc))
        await raw.nack(policy.backoff(raw.delivery))
        return _count(consumer, "retried")
    await raw.reject()
    return _count(consumer, f"dead_lettered_{kind}")


def validation_reason(exc: ValidationError) -> str:
    """A dead letter's reason for a payload that failed validation: the first ten errors."""
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
        for err in exc.errors()[:10]
    ]
    return "invalid payload: " + "; ".join(parts)


def _count(consumer: str, outcome: str) -> str:
    MESSAGES.labels(consumer, outcome).inc()
    return outcome


def consumer_config(
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
