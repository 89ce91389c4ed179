"""Real processes killed with SIGKILL at the worst moments; nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared.bus import JetStreamPublisher, make_broker
from shared.db import Database, InboxRow, OutboxRow
from shared.events.catalog import CycleFailed, CycleRequested
from shared.relay import OutboxRelay
from tests.fixtures import ledger_service
from tests.fixtures.streams import stream_messages

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def spawn(module_args: list[str], nats_url: str, db_url: str, **extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DISTILLERY_NATS_URL": nats_url,
        "DISTILLERY_DATABASE_URL": db_url,
        "DISTILLERY_ACK_WAIT_S": "2",
        "DISTILLERY_LOG_JSON": "true",
        **extra,
    }
    return subprocess.Popen([sys.executable, "-m", *module_args], cwd=ROOT, env=env)


def serve_ledger(nats_url: str, db_url: str, **extra: str) -> subprocess.Popen:
    target = "tests.fixtures.ledger_service:create_app"
    return spawn(["shared.runtime.serve", target], nats_url, db_url, **extra)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def create_effects_table(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(ledger_service.metadata.create_all)


async def scalar(db: Database, stmt):
    async with db.uow() as uow:
        return await uow.session.scalar(stmt)


async def effect_counts(db: Database) -> Counter:
    async with db.uow() as uow:
        rows = (await uow.session.execute(select(ledger_service.effects.c.task_name))).all()
    return Counter(r[0] for r in rows)


async def wait_until(check, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited early with {proc.returncode}")
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def publish_cycles(db: Database, nats_url: str, names: list[str]) -> None:
    events = [CycleRequested(cycle_id=uuid.uuid4(), task_name=n, producer="cli") for n in names]
    async with db.uow() as uow:
        await uow.publish(*events)
        await uow.commit()
    async with make_broker(nats_url, client_name="cli") as broker:
        await broker.connect()
        await OutboxRelay(db, JetStreamPublisher(broker), producer="cli").drain()


async def answers_in_stream(nats_url: str) -> Counter:
    msgs = await stream_messages(nats_url, CycleFailed.subject)
    return Counter(CycleFailed.model_validate_json(m.data).task_name for m in msgs)


async def test_consumer_killed_between_effect_and_ack(private_nats, db: Database, tmp_path):
    await create_effects_table(db)
    names = [f"t{i}" for i in range(12)] + ["crash-me"] + [f"u{i}" for i in range(12)]
    await publish_cycles(db, private_nats.url, names)
    marker = tmp_path / "crashed"

    first = serve_ledger(private_nats.url, db.url, LEDGER_CRASH_MARKER=str(marker))
    assert first.wait(60) == -signal.SIGKILL, "the service should have killed itself"
    assert marker.exists()
    assert (await effect_counts(db))["crash-me"] == 1, "the effect committed before the kill"

    second = serve_ledger(private_nats.url, db.url, LEDGER_CRASH_MARKER=str(marker))
    try:

        async def all_applied() -> bool:
            return sum((await effect_counts(db)).values()) >= len(names) and not await scalar(
                db, select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
            )

        await wait_until(all_applied, proc=second)
        await asyncio.sleep(3)  # past ack_wait: a missed ack would be redelivered by now
    finally:
        stop(second)

    assert await effect_counts(db) == Counter(names), "every effect exactly once"
    assert await scalar(db, select(func.count()).select_from(InboxRow)) == len(names)
    assert await answers_in_stream(private_nats.url) == Counter(names)


async def test_relay_killed_between_publish_and_mark_sent(private_nats, db: Database, tmp_path):
    events = [
        CycleRequested(cycle_id=uuid.uuid4(), task_name=f"r{i}", producer="p") for i in range(40)
    ]
    async with db.uow() as uow:
        await uow.publish(*events)
        await uow.commit()
    env = {"RELAY_PRODUCER": "p", "RELAY_CRASH_MARKER": str(tmp_path / "crashed")}

    first = spawn(["tests.fixtures.relay_proc"], private_nats.url, db.url, **env)
    assert first.wait(60) == -signal.SIGKILL
    published_before_crash = len(await stream_messages(private_nats.url))
    assert published_before_crash >= 1
    assert (
        await scalar(
            db, select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
        )
        == 40
    )

    second = spawn(["tests.fixtures.relay_proc"], private_nats.url, db.url, **env)
    assert second.wait(60) == 0

    assert (
        await scalar(
            db, select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
        )
        == 0
    )
    retried = await scalar(
        db, select(func.count()).select_from(OutboxRow).where(OutboxRow.attempts > 1)
    )
    assert retried == published_before_crash, "the crashed batch was published a second time"
    ids = [m.headers["Nats-Msg-Id"] for m in await stream_messages(private_nats.url)]
    assert ids == [str(e.event_id) for e in events], "JetStream dropped the re-sent duplicates"


async def test_broker_restart_mid_stream_loses_nothing(private_nats, db: Database):
    await create_effects_table(db)
    service = serve_ledger(private_nats.url, db.url)
    names = [f"b{i}" for i in range(60)]
    stop_relay = asyncio.Event()
    try:
        async with make_broker(private_nats.url, client_name="cli") as broker:
            await broker.connect()
            relay = OutboxRelay(
                db,
                JetStreamPublisher(broker, timeout_s=1.0),
                producer="cli",
                poll_interval_s=0.05,
                retry_after_s=0.3,
            )
            relay_task = asyncio.create_task(relay.run(stop_relay))
            for i, name in enumerate(names):
                async with db.uow() as uow:
                    await uow.publish(
                        CycleRequested(cycle_id=uuid.uuid4(), task_name=name, producer="cli")
                    )
                    await uow.commit()
                if i == 30:
                    private_nats.kill()
                    await asyncio.sleep(1.0)
                    private_nats.start()
                await asyncio.sleep(0.02)

            async def all_applied() -> bool:
                return sum((await effect_counts(db)).values()) >= len(names) and sum(
                    (await answers_in_stream(private_nats.url)).values()
                ) >= len(names)

            await wait_until(all_applied, timeout=90, proc=service)
            stop_relay.set()
            await relay_task
        await asyncio.sleep(3)
    finally:
        stop(service)
    assert await effect_counts(db) == Counter(names)
    assert await answers_in_stream(private_nats.url) == Counter(names)
