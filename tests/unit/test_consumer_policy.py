"""The error policy in isolation: a fake message that implements the real port, a real SQLite."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import select

from shared.bus import PermanentError, process
from shared.db import Database, OutboxRow
from shared.events import ConsumerPolicy
from shared.events.catalog import CycleRequested, DeadLettered

POLICY = ConsumerPolicy(max_deliver=4, backoff_base_s=0.5, backoff_cap_s=3.0)


@dataclass
class FakeMessage:
    body: bytes
    delivery: int = 1
    subject: str = CycleRequested.subject
    stream_sequence: int = 7
    calls: list[tuple] = field(default_factory=list)

    async def ack(self) -> None:
        self.calls.append(("ack",))

    async def nack(self, delay: float) -> None:
        self.calls.append(("nack", delay))

    async def reject(self) -> None:
        self.calls.append(("reject",))

    async def in_progress(self) -> None:
        self.calls.append(("in_progress",))


def body() -> bytes:
    return (
        CycleRequested(cycle_id=uuid.uuid4(), task_name="t", producer="x")
        .model_dump_json()
        .encode()
    )


async def run(msg: FakeMessage, handler, db: Database) -> str:
    return await process(
        msg, CycleRequested, handler, service="svc", consumer="svc--c", db=db, policy=POLICY
    )


async def letters(db: Database) -> list[DeadLettered]:
    async with db.uow() as uow:
        rows = await uow.session.scalars(
            select(OutboxRow.payload).where(OutboxRow.subject == DeadLettered.subject)
        )
        return [DeadLettered.model_validate_json(r) for r in rows]


async def ok(event, delivery) -> None:
    pass


async def broken(event, delivery) -> None:
    raise TimeoutError("slow dependency")


def test_backoff_doubles_and_is_capped():
    assert [POLICY.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_success_acks(sqlite_db):
    msg = FakeMessage(body())
    assert await run(msg, ok, sqlite_db) == "acked"
    assert msg.calls == [("ack",)]


async def test_transient_failure_naks_with_delay_for_the_attempt(sqlite_db):
    msg = FakeMessage(body(), delivery=2)
    assert await run(msg, broken, sqlite_db) == "retried"
    assert msg.calls == [("nack", 1.0)]
    assert await letters(sqlite_db) == []


async def test_last_delivery_is_dead_lettered_not_dropped(sqlite_db):
    msg = FakeMessage(body(), delivery=POLICY.max_deliver)
    assert await run(msg, broken, sqlite_db) == "dead_lettered_exhausted"
    assert msg.calls == [("reject",)]
    [letter] = await letters(sqlite_db)
    assert letter.error_kind == "exhausted" and "slow dependency" in letter.reason
    assert letter.producer == "svc" and letter.consumer == "svc--c"


async def test_permanent_failure_is_dead_lettered_at_once(sqlite_db):
    async def rule_broken(event, delivery) -> None:
        raise PermanentError("artifact sha256 mismatch")

    msg = FakeMessage(body())
    assert await run(msg, rule_broken, sqlite_db) == "dead_lettered_permanent"
    [letter] = await letters(sqlite_db)
    assert "sha256 mismatch" in letter.reason
    assert letter.original_event_id is not None and letter.cycle_id is not None


async def test_a_redelivered_dead_letter_is_recorded_once(sqlite_db):
    for _ in range(2):  # e.g. the reject was lost and the message came back
        await run(FakeMessage(b"garbage", stream_sequence=42), ok, sqlite_db)
    assert len(await letters(sqlite_db)) == 1


async def test_when_the_dead_letter_cannot_be_written_the_message_is_kept(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'never-migrated.db'}")
    try:
        msg = FakeMessage(b"garbage", delivery=1)
        assert await run(msg, ok, db) == "retried"
        assert msg.calls == [("nack", 0.5)]
    finally:
        await db.dispose()
