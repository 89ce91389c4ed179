"""The stage template: consume one event, do the work, answer, the same way in every service.

A service writes three plain functions and declares them as a `Stage`:

- `prepare(event, run) -> job`: read and check the inputs. Cheap; raises `PermanentError` on
  input that retrying cannot fix (a missing artifact, a spec that does not validate).
- `work(job, run) -> result`: the long part, under a heartbeat. `run.thread(fn, ...)` and
  `run.process(target, payload, ResultType)` keep CPU-bound work off the event loop.
- `record(tx, job, result) -> events`: inside the one transaction, after the claim: write the
  service's rows and return the events that answer. They commit together, or not at all.

The template owns everything else, so no service writes it again:

1. an event this consumer already applied is skipped before any work (the inbox);
2. prepare and work run under a JetStream heartbeat, at most `concurrency` at a time;
3. claim + record + outbox commit in one transaction; a lost race commits nothing;
4. giving up. A `PermanentError`, or any error on the last allowed delivery, commits one
   transaction with the claim, the service's own failed row (`on_give_up`), a `DeadLettered`
   record and, for a stage that `ends_cycle`, `CycleFailed` naming the stage and the reason.
   No cycle is left running after its stage gave up.
5. refusing. An `UnknownCycleError` (the event names a cycle this platform never started)
   commits the claim and the dead letter only: no failed row and no `cycle.failed`, since
   there is no cycle of ours to end and a made-up id must not touch a real one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from faststream.nats import NatsRouter
from pydantic import BaseModel
from sqlalchemy import select

from shared.bus import Delivery, GaveUp, PermanentError, UnknownCycleError, subscribe
from shared.bus.consumer import dead_letter_record
from shared.db import Database, InboxRow, UnitOfWork
from shared.events import Event
from shared.events.catalog import CycleFailed
from shared.logs import get_logger

from .worker import Progress, run_in_worker

log = get_logger(__name__)

E = TypeVar("E", bound=Event)
J = TypeVar("J")
R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)
StageName = Literal["synth", "curation", "training", "evaluation", "quantization", "rollout"]


@dataclass
class StageRun:
    """What prepare and work get besides their input: the delivery and ways off the loop."""

    service: str
    stage: StageName
    delivery: Delivery

    @property
    def consumer(self) -> str:
        return self.delivery.consumer

    @property
    def last_delivery(self) -> bool:
        return self.delivery.number >= self.delivery.policy.max_deliver

    def heartbeat(self) -> AbstractAsyncContextManager[None]:
        return self.delivery.heartbeat()

    async def thread(self, fn: Callable[..., R], *args: Any) -> R:
        """CPU-bound work for seconds: a thread keeps heartbeats and the relay running."""
        return await asyncio.to_thread(fn, *args)

    async def process(
        self,
        target: str,
        payload: BaseModel,
        result_type: type[M],
        *,
        on_progress: Progress | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> M:
        """Minutes of work in a child interpreter (`shared.runtime.worker`), typed both ways."""
        raw = await run_in_worker(
            target,
            payload.model_dump(mode="json"),
            on_progress=on_progress,
            log_path=log_path,
            env=env,
        )
        return result_type.model_validate(raw)


@dataclass(frozen=True)
class Stage(Generic[E, J, R]):
    """One consumed event and how a service answers it; see the module docstring."""

    name: StageName
    consumes: type[E]
    prepare: Callable[[E, StageRun], Awaitable[J]]
    work: Callable[[J, StageRun], Awaitable[R]]
    record: Callable[[UnitOfWork, J, R], Awaitable[Sequence[Event]]]
    # The service's own failed-run row, written in the give-up transaction.
    on_give_up: Callable[[UnitOfWork, E, str], Awaitable[None]] | None = None
    # False for work whose failure leaves the cycle able to go on (a quantized variant).
    ends_cycle: bool = True
    # None: as many at once as the consumer's batch fetches.
    concurrency: int | None = None
    batch_size: int | None = None
    # True: a consumer created today starts at today's events, not at the stream's history
    # (bookkeeping that replayed history would get wrong, not work that must happen).
    from_now: bool = False
    description: str | None = field(default=None, compare=False)


async def already_applied(db: Database, consumer: str, event: Event) -> bool:
    async with db.uow() as uow:
        found = await uow.session.scalar(
            select(InboxRow.event_id).where(
                InboxRow.consumer == consumer, InboxRow.event_id == str(event.event_id)
            )
        )
    return found is not None


def handler_for(
    stage: Stage[E, J, R], *, service: str, db: Database
) -> Callable[[E, Delivery], Awaitable[None]]:
    """The bus handler the template runs for `stage`; exposed for tests without a broker."""
    slots = asyncio.Semaphore(stage.concurrency) if stage.concurrency else None

    async def handle(event: E, delivery: Delivery) -> None:
        if await already_applied(db, delivery.consumer, event):
            return
        run = StageRun(service, stage.name, delivery)
        try:
            async with run.heartbeat():
                if slots is None:
                    job = await stage.prepare(event, run)
                    result = await stage.work(job, run)
                else:
                    async with slots:
                        job = await stage.prepare(event, run)
                        result = await stage.work(job, run)
        except UnknownCycleError as exc:
            await give_up(stage, event, run, db, "permanent", _reason(exc), refused=True)
        except PermanentError as exc:
            await give_up(stage, event, run, db, "permanent", _reason(exc))
        except Exception as exc:
            if not run.last_delivery:
                raise  # the consumer policy retries with a delayed NAK
            reason = f"gave up after {delivery.number} deliveries; last error: {_reason(exc)}"
            await give_up(stage, event, run, db, "exhausted", reason)
        else:
            await _commit(stage, event, job, result, run, db)

    return handle


async def _commit(
    stage: Stage[E, J, R], event: E, job: J, result: R, run: StageRun, db: Database
) -> None:
    async with db.uow() as uow:
        if not await uow.claim(run.consumer, event):
            return  # a concurrent delivery committed first; its answer stands
        answers = await stage.record(uow, job, result)
        await uow.publish(*answers)
        await uow.commit()
    log.info(
        "stage committed",
        stage=stage.name,
        answers=sorted({a.subject.removeprefix("distillery.") for a in answers}),
    )


async def give_up(
    stage: Stage[E, Any, Any],
    event: E,
    run: StageRun,
    db: Database,
    kind: str,
    reason: str,
    *,
    refused: bool = False,
) -> None:
    """Commit the claim, the failed row, the dead letter and cycle.failed; then terminate.

    `refused` (an event about a cycle that is not ours): the claim and the dead letter only.
    """
    async with db.uow() as uow:
        if await uow.claim(run.consumer, event):
            if not refused and stage.on_give_up is not None:
                await stage.on_give_up(uow, event, reason)
            letter = dead_letter_record(
                run.delivery.message,
                service=run.service,
                consumer=run.consumer,
                kind=kind,
                reason=reason,
                event=event,
            )
            await uow.publish(letter)
            if not refused and stage.ends_cycle and event.cycle_id is not None:
                await uow.publish(cycle_failed(event, run.service, stage.name, reason))
            await uow.commit()
    log.error("stage gave up", stage=stage.name, kind=kind, reason=reason[:500])
    raise GaveUp(kind, reason)


def cycle_failed(event: Event, service: str, stage: StageName, reason: str) -> CycleFailed:
    return event.caused(
        CycleFailed,
        producer=service,
        task_name=getattr(event, "task_name", None) or "unknown",
        stage=stage,
        reason=reason[:4000],
    )


def add_stage(
    router: NatsRouter, stage: Stage[Any, Any, Any], *, service: str, db: Database, policy
) -> str:
    """Subscribe `stage` durably as `service`; returns the consumer name."""
    return subscribe(
        router,
        stage.consumes,
        handler_for(stage, service=service, db=db),
        service=service,
        db=db,
        policy=policy,
        batch_size=stage.batch_size,
        from_now=stage.from_now,
    )


def _reason(exc: BaseException) -> str:
    # str() of our own errors is written for people; repr() keeps the type of anything else.
    if isinstance(exc, PermanentError) and str(exc):
        return str(exc)
    return repr(exc)
