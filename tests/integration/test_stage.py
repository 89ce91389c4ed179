"""The stage template on real SQLite and PostgreSQL, driven through the consumer policy.

The message is a fake that implements the policy's port (tests/unit/test_consumer_policy.py);
the database, the worker process and the transactions are real.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select

from shared.bus import PermanentError, process
from shared.db import Database, InboxRow, OutboxRow
from shared.events import ConsumerPolicy, Event
from shared.events.catalog import CycleFailed, CycleRequested, DeadLettered, SynthCompleted
from shared.runtime.stage import Stage, StageRun, handler_for
from tests.fixtures.worker_jobs import DoubleIn, DoubleOut
from tests.unit.test_consumer_policy import FakeMessage

POLICY = ConsumerPolicy(max_deliver=3, backoff_base_s=0.5, backoff_cap_s=3.0)
CONSUMER = "svc--cycle-requested-v1"


@dataclass
class Calls:
    prepared: int = 0
    worked: int = 0
    fail_with: BaseException | None = None
    answers: list[Event] = field(default_factory=list)


def make_stage(calls: Calls, *, ends_cycle: bool = True) -> Stage:
    async def prepare(event: CycleRequested, run: StageRun) -> CycleRequested:
        calls.prepared += 1
        if calls.fail_with is not None:
            raise calls.fail_with
        return event

    async def work(event: CycleRequested, run: StageRun) -> int:
        calls.worked += 1
        return len(event.task_name)

    async def record(uow, event: CycleRequested, length: int) -> list[Event]:
        return [
            event.caused(
                CycleFailed,
                producer="svc",
                task_name=event.task_name,
                stage="synth",
                reason=f"answer {length}",
            )
        ]

    async def on_give_up(uow, event: CycleRequested, reason: str) -> None:
        # Stands for the service's own failed-run row: a write in the same transaction.
        await uow.claim("svc--failed-rows", event)

    return Stage(
        "synth", CycleRequested, prepare, work, record, on_give_up=on_give_up, ends_cycle=ends_cycle
    )


def message(delivery: int = 1) -> tuple[CycleRequested, FakeMessage]:
    event = CycleRequested(cycle_id=uuid.uuid4(), task_name="triage", producer="cli")
    return event, FakeMessage(event.model_dump_json().encode(), delivery=delivery)


async def deliver(db: Database, stage: Stage, msg: FakeMessage) -> str:
    handler = handler_for(stage, service="svc", db=db)
    return await process(
        msg, CycleRequested, handler, service="svc", consumer=CONSUMER, db=db, policy=POLICY
    )


async def outbox(db: Database) -> list[tuple[str, str]]:
    async with db.uow() as uow:
        rows = await uow.session.execute(select(OutboxRow.subject, OutboxRow.payload))
        return list(rows.all())


async def inbox(db: Database) -> set[str]:
    async with db.uow() as uow:
        return set(await uow.session.scalars(select(InboxRow.consumer)))


async def test_success_commits_claim_and_answer_and_a_redelivery_does_nothing(db):
    calls = Calls()
    stage = make_stage(calls)
    _event, msg = message()
    assert await deliver(db, stage, msg) == "acked"
    [(subject, payload)] = await outbox(db)
    assert subject == CycleFailed.subject
    assert CycleFailed.model_validate_json(payload).reason == "answer 6"
    again = FakeMessage(msg.body, delivery=2)
    assert await deliver(db, stage, again) == "acked"
    assert (calls.prepared, calls.worked) == (1, 1)  # skipped before any work
    assert len(await outbox(db)) == 1


async def test_permanent_error_ends_the_cycle_with_the_stage_and_a_dead_letter(db):
    calls = Calls(fail_with=PermanentError("batch artifact is not UTF-8"))
    stage = make_stage(calls)
    event, msg = message()
    assert await deliver(db, stage, msg) == "dead_lettered_permanent"
    assert msg.calls[-1] == ("reject",)
    by_subject = {s: p for s, p in await outbox(db)}
    failed = CycleFailed.model_validate_json(by_subject[CycleFailed.subject])
    assert failed.stage == "synth" and "not UTF-8" in failed.reason
    assert failed.cycle_id == event.cycle_id and failed.causation_id == event.event_id
    letter = DeadLettered.model_validate_json(by_subject[DeadLettered.subject])
    assert letter.error_kind == "permanent" and letter.original_event_id == str(event.event_id)
    assert await inbox(db) == {CONSUMER, "svc--failed-rows"}
    # Redelivered (the reject was lost): no second record, no work.
    assert await deliver(db, stage, FakeMessage(msg.body, delivery=2)) == "acked"
    assert len(await outbox(db)) == 2 and calls.worked == 0


async def test_transient_error_retries_until_the_last_delivery_then_ends_the_cycle(db):
    calls = Calls(fail_with=ConnectionError("teacher down"))
    stage = make_stage(calls)
    _event, first = message(delivery=1)
    assert await deliver(db, stage, first) == "retried"
    assert await outbox(db) == [] and await inbox(db) == set()
    last = FakeMessage(first.body, delivery=POLICY.max_deliver)
    assert await deliver(db, stage, last) == "dead_lettered_exhausted"
    subjects = sorted(s for s, _ in await outbox(db))
    assert subjects == sorted([CycleFailed.subject, DeadLettered.subject])
    failed = next(
        CycleFailed.model_validate_json(p) for s, p in await outbox(db) if s == CycleFailed.subject
    )
    assert "after 3 deliveries" in failed.reason and "teacher down" in failed.reason


async def test_a_stage_that_does_not_end_the_cycle_only_dead_letters(db):
    stage = make_stage(Calls(fail_with=PermanentError("variant unreadable")), ends_cycle=False)
    _, msg = message()
    assert await deliver(db, stage, msg) == "dead_lettered_permanent"
    assert [s for s, _ in await outbox(db)] == [DeadLettered.subject]


async def test_a_lost_race_commits_nothing(db):
    calls = Calls()
    stage = make_stage(calls)
    _event, msg = message()
    inner_prepare = stage.prepare

    async def racing_prepare(ev: CycleRequested, run: StageRun) -> CycleRequested:
        # Another delivery of the same event commits while this one works.
        async with db.uow() as uow:
            await uow.claim(CONSUMER, ev)
            await uow.commit()
        return await inner_prepare(ev, run)

    racing = dataclasses.replace(stage, prepare=racing_prepare)
    assert await deliver(db, racing, msg) == "acked"
    assert await outbox(db) == []


def _delivery(msg: FakeMessage):
    from shared.bus import Delivery

    return Delivery(msg, CONSUMER, POLICY)


async def test_process_work_is_typed_both_ways(sqlite_db):
    run = StageRun("svc", "training", _delivery(FakeMessage(b"{}")))
    out = await run.process("tests.fixtures.worker_jobs:double", DoubleIn(values=[1, 2]), DoubleOut)
    assert out == DoubleOut(doubled=[2, 4])


async def test_a_payload_the_worker_cannot_read_is_permanent(sqlite_db):
    run = StageRun("svc", "training", _delivery(FakeMessage(b"{}")))

    class Wrong(DoubleIn):
        values: list[str]  # type: ignore[assignment]

    try:
        await run.process("tests.fixtures.worker_jobs:double", Wrong(values=["x"]), DoubleOut)
    except PermanentError as exc:
        assert "payload" in str(exc)
    else:
        raise AssertionError("a payload that does not validate must be a permanent error")


def test_synth_completed_is_a_cycle_event():
    # cycle_failed() names the task from the consumed event; every stage input carries one.
    assert "task_name" in SynthCompleted.model_fields
