"""Batched consumption: up to N messages applied in one transaction, acked after its commit.

For high-volume, light events (traces, ratings) a transaction and a round trip per message
cost far more than the work. Here a pulled batch is applied in one unit of work:

1. every message is validated; one that fails is dead-lettered on its own (its record staged
   in the same transaction) and rejected after the commit, so it cannot poison the others;
2. one statement claims every valid event (one inbox row each); the handler receives only
   the events this consumer has not applied before, inside that unit of work;
3. the kernel commits the inbox rows, the handler's effects and its outbox rows together,
   and only then acks every message.

Exactly-once holds per event by the same argument as `process`: inbox row, effect and
outbox rows commit atomically, acks follow the commit, and a redelivery (a crash before the
acks, an ack lost) finds the inbox row and has no second effect.

If the batch transaction fails for any reason (one event the handler rejects, a constraint,
a lost connection), the batch is applied again one message at a time through `process`, so
the per-message policy decides each message's fate: the good ones commit, a permanent
failure is dead-lettered, a transient one is NAKed with backoff until `max_deliver` and
then dead-lettered as exhausted. A message that keeps failing therefore costs its batch one
failed attempt per delivery, never its neighbours' effects.

`claim=False` is for a handler whose effect is keyed by the event id itself (an insert with
`ON CONFLICT (event_id) DO NOTHING`): the effect row is then the inbox row, and a second one
would double the writes for nothing. Such a handler gets every valid event (each id once per
batch) and must stay idempotent when one comes again.

A batch handler must not commit and should raise `PermanentError` for an event that can never
be applied. `GaveUp` has no meaning here (the kernel owns the transaction); it is treated
as a permanent failure.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

from pydantic import ValidationError

from shared.db import Database, UnitOfWork
from shared.db.uow import by_id
from shared.events import ConsumerPolicy
from shared.logs import get_logger
from shared.metrics import HANDLE_SECONDS, MESSAGES

from .consumer import Delivery, E, RawMessage, dead_letter_record, process, validation_reason
from .errors import GaveUp, PermanentError
from .heartbeat import heartbeat

log = get_logger(__name__)

BatchHandler = Callable[[UnitOfWork, list[E]], Awaitable[None]]


class AllInProgress:
    """One heartbeat for the whole batch: a slow commit must not let any of it be redelivered."""

    def __init__(self, messages: Sequence[RawMessage]) -> None:
        self.messages = messages

    async def in_progress(self) -> None:
        for message in self.messages:
            await message.in_progress()


async def process_batch(
    raws: Sequence[RawMessage],
    event_cls: type[E],
    handler: BatchHandler[E],
    *,
    service: str,
    consumer: str,
    db: Database,
    policy: ConsumerPolicy,
    claim: bool = True,
) -> list[str]:
    """Apply the batch policy to `raws`; returns each message's outcome, in order."""
    if not raws:
        return []
    events: list[E | None] = []
    letters = []
    for raw in raws:
        try:
            events.append(event_cls.model_validate_json(raw.body))
        except ValidationError as exc:
            events.append(None)
            letters.append(
                dead_letter_record(
                    raw,
                    service=service,
                    consumer=consumer,
                    kind="validation",
                    reason=validation_reason(exc),
                )
            )

    started = time.perf_counter()
    try:
        async with heartbeat(AllInProgress(raws), policy.ack_wait_s / 3), db.uow() as uow:
            valid = [e for e in events if e is not None]
            fresh = await uow.claim_many(consumer, valid) if claim else list(by_id(valid).values())
            if fresh:
                await handler(uow, fresh)
            await uow.publish(*letters)
            await uow.commit()
    except Exception as exc:  # any failure: the per-message policy sorts out each message
        log.warning(
            "batch failed; applying its messages one by one",
            consumer=consumer,
            size=len(raws),
            error=repr(exc),
        )
        return await _one_by_one(
            raws,
            event_cls,
            handler,
            service=service,
            consumer=consumer,
            db=db,
            policy=policy,
            claim=claim,
        )
    finally:
        HANDLE_SECONDS.labels(consumer).observe(time.perf_counter() - started)

    outcomes = []
    for raw, event in zip(raws, events, strict=True):
        outcomes.append(await _settle(raw, acked=event is not None))
    for letter in letters:
        log.error("dead-lettered", consumer=consumer, kind="validation", reason=letter.reason)
    for outcome in set(outcomes):
        MESSAGES.labels(consumer, outcome).inc(outcomes.count(outcome))
    return outcomes


async def _settle(raw: RawMessage, *, acked: bool) -> str:
    # A failed ack is harmless once the batch has committed: the message comes back and its
    # inbox row (or its dead letter's fixed event_id) makes the redelivery a no-op.
    try:
        if acked:
            await raw.ack()
        else:
            await raw.reject()
    except Exception as exc:
        log.warning("ack after commit failed; the redelivery will be skipped", error=repr(exc))
    return "acked" if acked else "dead_lettered_validation"


async def _one_by_one(
    raws: Sequence[RawMessage],
    event_cls: type[E],
    handler: BatchHandler[E],
    *,
    service: str,
    consumer: str,
    db: Database,
    policy: ConsumerPolicy,
    claim: bool,
) -> list[str]:
    async def single(event: E, delivery: Delivery) -> None:
        async with db.uow() as uow:
            if claim and not await uow.claim(delivery.consumer, event):
                return
            try:
                await handler(uow, [event])
            except GaveUp as exc:
                raise PermanentError(exc.reason) from exc
            await uow.commit()

    # In order, one after the other: the batch was one writer, and so is its fallback.
    return [
        await process(
            raw, event_cls, single, service=service, consumer=consumer, db=db, policy=policy
        )
        for raw in raws
    ]
