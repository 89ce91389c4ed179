"""Committed effects per second through the exactly-once path, against raw nats-py JetStream.

Both paths run in this process on one private nats-server, in the same run; the ratio
(project / raw) is the figure, absolute rates are the machine's. Each path first moves WARMUP
messages through the same connections, untimed.

- project: N CycleRequested are staged in the outbox (STAGE_TXN per transaction), an in-process
  OutboxRelay publishes them, and a consumer wired by `subscribe` claims each one and inserts an
  effect row in one unit of work. Timed from before the first staging transaction until the
  N-th effect has committed; the table is then checked for one row per event, none doubled.
- raw: nats-py publishes N same-size messages with a Nats-Msg-Id, each awaiting its PubAck
  (PUBLISH_WINDOW in flight: the relay publishes concurrently too) while a durable pull consumer
  fetches FETCH_BATCH at a time and acks each explicitly. Timed until the N-th ack.

    .venv/bin/python bench/bus.py [--db sqlite|postgres] [--n 2000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack, suppress
from pathlib import Path

# Run as a script (`python bench/bus.py`), Python puts bench/ on sys.path, not the repo root
# that holds the `shared` package; add the root so the benchmark needs no install step.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import nats  # noqa: E402
from nats.errors import TimeoutError as NatsTimeout  # noqa: E402
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy  # noqa: E402
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select  # noqa: E402

from shared.bus import Delivery, JetStreamPublisher, ensure_stream, make_broker  # noqa: E402
from shared.bus import subscribe as subscribe_event  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.events import STREAM_NAME  # noqa: E402
from shared.events.catalog import CycleRequested  # noqa: E402
from shared.logs import configure_logging  # noqa: E402
from shared.relay import OutboxRelay  # noqa: E402
from shared.runtime.natsd import NatsServer  # noqa: E402

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PRODUCER = "bench"
RAW_SUBJECT = "distillery.bench.raw.v1"  # inside the stream's "distillery.>", no catalog event
WARMUP = 50
STAGE_TXN = 50
PUBLISH_WINDOW = 50
FETCH_BATCH = 16  # the raw consumer's fetch size

metadata = MetaData()
effects = Table(
    "bench_effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("task_name", String(100), nullable=False),
)


def deadline_s(n: int) -> float:
    return 60.0 + n / 10  # only to fail instead of hanging; far above any sane run


async def stage(db: Database, n: int) -> None:
    for start in range(0, n, STAGE_TXN):
        events = [
            CycleRequested(cycle_id=uuid.uuid4(), task_name=f"t{start + i}", producer=PRODUCER)
            for i in range(min(STAGE_TXN, n - start))
        ]
        async with db.uow() as uow:
            await uow.publish(*events)
            await uow.commit()


async def project_phase(nats_url: str, db_url: str, n: int) -> float:
    # Two Database objects: separate pools, as a producer and a consumer service would have.
    producer_db, consumer_db = Database(db_url), Database(db_url)
    async with producer_db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    committed = 0
    target = WARMUP
    reached = asyncio.Event()

    async def on_cycle(event: CycleRequested, delivery: Delivery) -> None:
        nonlocal committed
        async with consumer_db.uow() as uow:
            if not await uow.claim(delivery.consumer, event):
                return
            await uow.session.execute(
                insert(effects).values(event_id=str(event.event_id), task_name=event.task_name)
            )
            await uow.commit()
        committed += 1
        if committed >= target:
            reached.set()

    stop = asyncio.Event()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(consumer_db.dispose)
        stack.push_async_callback(producer_db.dispose)
        consumer = await stack.enter_async_context(make_broker(nats_url, client_name="consumer"))
        # As a service would: one message at a time on SQLite (one writer), the default on PG.
        batch = 1 if consumer_db.dialect == "sqlite" else None
        subscribe_event(
            consumer, CycleRequested, on_cycle, service="bench", db=consumer_db, batch_size=batch
        )
        await consumer.start()
        producer = await stack.enter_async_context(make_broker(nats_url, client_name="producer"))
        await producer.connect()
        relay = OutboxRelay(
            producer_db, JetStreamPublisher(producer), producer=PRODUCER, poll_interval_s=0.1
        )
        relay_task = asyncio.create_task(relay.run(stop))

        async def stop_relay() -> None:
            stop.set()
            with suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(relay_task, 10)

        stack.push_async_callback(stop_relay)

        await stage(producer_db, WARMUP)
        await asyncio.wait_for(reached.wait(), deadline_s(WARMUP))
        reached.clear()
        target = WARMUP + n
        started = time.perf_counter()
        await stage(producer_db, n)
        await asyncio.wait_for(reached.wait(), deadline_s(n))
        elapsed = time.perf_counter() - started

        async with consumer_db.uow() as uow:
            rows = await uow.session.scalar(select(func.count()).select_from(effects))
            distinct = await uow.session.scalar(select(func.count(effects.c.event_id.distinct())))
        if not rows == distinct == WARMUP + n:
            raise RuntimeError(f"expected {WARMUP + n} distinct effects, found {rows}/{distinct}")
    return elapsed


async def raw_round(js, sub, n: int, payload: bytes) -> None:
    async def produce() -> None:
        for start in range(0, n, PUBLISH_WINDOW):
            await asyncio.gather(
                *(
                    js.publish(RAW_SUBJECT, payload, headers={"Nats-Msg-Id": str(uuid.uuid4())})
                    for _ in range(min(PUBLISH_WINDOW, n - start))
                )
            )

    async def consume() -> None:
        acked = 0
        while acked < n:
            try:
                msgs = await sub.fetch(FETCH_BATCH, timeout=1.0)
            except NatsTimeout:
                continue
            for msg in msgs:
                await msg.ack()
            acked += len(msgs)

    await asyncio.wait_for(asyncio.gather(produce(), consume()), deadline_s(n))


async def raw_phase(nats_url: str, n: int) -> float:
    # The same size as a relayed event, so both paths move the same bytes.
    sample = CycleRequested(cycle_id=uuid.uuid4(), task_name="t0", producer=PRODUCER)
    payload = sample.model_dump_json().encode()
    nc = await nats.connect(nats_url, name="raw")
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            RAW_SUBJECT,
            durable="bench-raw",
            stream=STREAM_NAME,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL),
        )
        await raw_round(js, sub, WARMUP, payload)
        started = time.perf_counter()
        await raw_round(js, sub, n, payload)
        return time.perf_counter() - started
    finally:
        await nc.close()


async def run(kind: str, n: int) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    configure_logging("WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="distillery-bench-"))
    server = NatsServer(tmp / "nats")
    pg_name: str | None = None
    try:
        server.start()  # blocking for a moment; not in a thread, so a cancel cannot orphan it
        await ensure_stream(server.url)
        if kind == "postgres":
            pg_name = f"distillery_bench_{uuid.uuid4().hex[:12]}"
            admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
            try:
                await admin.execute(f'CREATE DATABASE "{pg_name}"')
            finally:
                await admin.close()
            db_url = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql:", "postgresql+asyncpg:")
            db_url = f"{db_url}/{pg_name}"
        else:
            db_url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        await asyncio.to_thread(upgrade, db_url)

        project_s = await project_phase(server.url, db_url, n)
        raw_s = await raw_phase(server.url, n)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if pg_name is not None:
            admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            finally:
                await admin.close()

    print(f"db={kind}  N={n}  (warm-up {WARMUP} per path, untimed)")
    print(f"{'path':<36}{'count':>7}{'seconds':>10}{'per second':>12}")
    for name, secs in (
        ("project (outbox+relay+inbox+effect)", project_s),
        ("raw nats-py (PubAck + explicit ack)", raw_s),
    ):
        print(f"{name:<36}{n:>7}{secs:>10.3f}{n / secs:>12.1f}")
    print(f"{'ratio (project / raw)':<36}{raw_s / project_s:>29.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--n", type=int, default=2000, help="timed messages per path")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=300")
    args = parser.parse_args()
    n = 300 if args.quick else args.n
    if n < 1:
        parser.error("--n must be at least 1")
    try:
        asyncio.run(run(args.db, n))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
