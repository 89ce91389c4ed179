"""Committed effects per second through the exactly-once paths, against raw nats-py JetStream.

Per-message (`subscribe`), batched (`subscribe_batch`) and raw paths on one private nats-server
and one database, in one run; bench/README.md describes them. The effects table must then hold
one row per event, or the exit status is 1.

    .venv/bin/python bench/bus.py [--db sqlite|postgres] [--n 2000] [--quick] [--before DIR]

The per-message goal (issue 9: >= 3 x the figure before kernel v2) needs that figure from this
machine: `--before DIR` names a checkout of the code before it (`git worktree add DIR b1a3a7d`);
its own bench/bus.py runs first, in the same interpreter and database, and its per-message
rate is the baseline. Without it the goal is reported as not measured, never as met.
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
from dataclasses import dataclass
from pathlib import Path

# Run as a script (`python bench/bus.py`), Python puts bench/ on sys.path, not the repo root
# that holds the `shared` package; add the root so the benchmark needs no install step.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import nats  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from bus_report import BEFORE_COMMIT, measure_before, report  # noqa: E402
from nats.errors import TimeoutError as NatsTimeout  # noqa: E402
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy  # noqa: E402

import shared.bus as kernel  # noqa: E402
from shared.db import Database, UnitOfWork  # noqa: E402
from shared.db.migrate import upgrade  # noqa: E402
from shared.events import STREAM_NAME, ConsumerPolicy  # noqa: E402
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
BATCH = 256  # the batched consumer's pull size
LABELS = {
    "raw": "raw nats-py (PubAck + explicit ack)",
    "per-message": "per-message (subscribe)",
    "batched": f"batched (subscribe_batch, {BATCH})",
}

metadata = sa.MetaData()
effects = sa.Table(
    "bench_effects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("task_name", sa.String(100), nullable=False),
)


@dataclass
class Result:
    seconds: float
    effects: int = 0
    distinct: int = 0


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


async def stop_task(stop: asyncio.Event, task: asyncio.Task) -> None:
    stop.set()
    with suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


async def purge(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    await nc.jetstream().purge_stream(STREAM_NAME)
    await nc.close()


async def project_phase(nats_url: str, db_url: str, n: int, *, batched: bool) -> Result:
    await purge(nats_url)
    # Two Database objects: separate pools, as a producer and a consumer service would have.
    producer_db, consumer_db = Database(db_url), Database(db_url)
    async with producer_db.engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    count, bumped = [0], asyncio.Event()

    def committed(k: int) -> None:
        count[0] += k
        bumped.set()

    async def until(target: int) -> None:
        while count[0] < target:  # woken by each commit
            bumped.clear()
            await asyncio.wait_for(bumped.wait(), deadline_s(target))

    async def on_cycle(cycle: CycleRequested, delivery: kernel.Delivery) -> None:
        async with consumer_db.uow() as uow:
            if not await uow.claim(delivery.consumer, cycle):
                return
            await uow.session.execute(
                effects.insert().values(event_id=str(cycle.event_id), task_name=cycle.task_name)
            )
            await uow.commit()
        committed(1)

    async def on_batch(uow: UnitOfWork, cycles: list[CycleRequested]) -> None:
        rows = [{"event_id": str(c.event_id), "task_name": c.task_name} for c in cycles]
        await uow.session.execute(effects.insert(), rows)
        # The kernel commits after the handler returns; count the effects once it has.
        sa.event.listen(uow.session.sync_session, "after_commit", lambda _: committed(len(rows)))

    stop = asyncio.Event()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(consumer_db.dispose)
        stack.push_async_callback(producer_db.dispose)
        consumer = kernel.make_broker(nats_url, client_name="consumer")
        await stack.enter_async_context(consumer)
        service = f"bench-{'batch' if batched else 'msg'}"
        if batched:
            batch = kernel.subscribe_batch(
                CycleRequested, on_batch, service=service, db=consumer_db, batch_size=BATCH
            )
            stack.push_async_callback(
                stop_task, stop, asyncio.create_task(batch.run(consumer, stop))
            )
        else:
            # As a service would (shared/runtime/service.py): one at a time on SQLite.
            policy = ConsumerPolicy(batch_size=1 if consumer_db.dialect == "sqlite" else 4)
            kernel.subscribe(
                consumer, CycleRequested, on_cycle, service=service, db=consumer_db, policy=policy
            )
        await consumer.start()
        producer = kernel.make_broker(nats_url, client_name="producer")
        await stack.enter_async_context(producer)
        await producer.connect()
        publisher = kernel.JetStreamPublisher(producer)
        relay = OutboxRelay(producer_db, publisher, producer=PRODUCER, poll_interval_s=0.1)
        stack.push_async_callback(stop_task, stop, asyncio.create_task(relay.run(stop)))

        await stage(producer_db, WARMUP)
        await until(WARMUP)
        started = time.perf_counter()
        await stage(producer_db, n)
        await until(WARMUP + n)
        result = Result(time.perf_counter() - started)

        await asyncio.sleep(0.5)  # a late duplicate would land here
        async with consumer_db.uow() as uow:
            counts = sa.select(sa.func.count(), sa.func.count(effects.c.event_id.distinct()))
            result.effects, result.distinct = (await uow.session.execute(counts)).one()
    return result


async def raw_round(js, sub, n: int, payload: bytes) -> None:
    async def produce() -> None:
        for start in range(0, n, PUBLISH_WINDOW):
            window = range(min(PUBLISH_WINDOW, n - start))
            headers = [{"Nats-Msg-Id": str(uuid.uuid4())} for _ in window]
            await asyncio.gather(*(js.publish(RAW_SUBJECT, payload, headers=h) for h in headers))

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


async def raw_phase(nats_url: str, n: int) -> Result:
    await purge(nats_url)
    # The same size as a relayed event, so all paths move the same bytes.
    sample = CycleRequested(cycle_id=uuid.uuid4(), task_name="t0", producer=PRODUCER)
    payload = sample.model_dump_json().encode()
    nc = await nats.connect(nats_url, name="raw")
    try:
        js = nc.jetstream()
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL)
        sub = await js.pull_subscribe(
            RAW_SUBJECT, durable="bench-raw", stream=STREAM_NAME, config=config
        )
        await raw_round(js, sub, WARMUP, payload)
        started = time.perf_counter()
        await raw_round(js, sub, n, payload)
        return Result(time.perf_counter() - started)
    finally:
        await nc.close()


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    await conn.execute(sql)
    await conn.close()


async def run(kind: str, n: int) -> dict[str, Result]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    configure_logging("WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="distillery-bench-"))
    server = NatsServer(tmp / "nats")
    async with AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        server.start()  # blocking for a moment; not in a thread, so a cancel cannot orphan it
        stack.callback(server.stop)
        await kernel.ensure_stream(server.url)
        db_url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        if kind == "postgres":
            name = f"distillery_bench_{uuid.uuid4().hex[:12]}"
            await admin(f'CREATE DATABASE "{name}"')
            stack.push_async_callback(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql:", "postgresql+asyncpg:")
            db_url = f"{base}/{name}"
        await asyncio.to_thread(upgrade, db_url)
        return {
            "raw": await raw_phase(server.url, n),
            "per-message": await project_phase(server.url, db_url, n, batched=False),
            "batched": await project_phase(server.url, db_url, n, batched=True),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--n", type=int, default=2000, help="timed messages per path")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=300")
    parser.add_argument(
        "--before",
        type=Path,
        help=f"a checkout of {BEFORE_COMMIT} (the code before kernel v2): its per-message rate, "
        "measured first in this run, is the per-message goal's baseline",
    )
    args = parser.parse_args()
    n = 300 if args.quick else args.n
    if n < 1:
        parser.error("--n must be at least 1")
    try:
        before = measure_before(args.before, args.db, n) if args.before else None
        results = asyncio.run(run(args.db, n))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    return 0 if report(args.db, n, results, before, LABELS, WARMUP) else 1


if __name__ == "__main__":
    sys.exit(main())
