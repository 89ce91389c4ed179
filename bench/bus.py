"""Committed effects per second through the exactly-once paths, against raw nats-py JetStream.

All paths run in this process on one private nats-server and one database, in the same run;
the ratios (path / raw) are the figures, absolute rates are the machine's. Each path first
moves WARMUP messages through the same connections, untimed, and the stream is purged between
paths so no consumer sees another path's messages.

- per-message: N CycleRequested are staged in the outbox (STAGE_TXN per transaction), an
  in-process OutboxRelay publishes them, and a consumer wired by `subscribe` claims each one
  and inserts an effect row in one unit of work (as tests/fixtures/ledger_service.py does),
  fetching as a service would (1 at a time on SQLite, ConsumerPolicy.batch_size on PostgreSQL).
- batched: the same producer side; a consumer made by `subscribe_batch` (up to BATCH per
  pull) inserts the effect rows of a whole batch with one executemany in the kernel's unit
  of work.
- raw: nats-py publishes N same-size messages with a Nats-Msg-Id, each awaiting its PubAck
  (PUBLISH_WINDOW in flight) while a durable pull consumer fetches FETCH_BATCH at a time and
  acks each explicitly. Timed until the N-th ack.

The project paths are timed from before the first staging transaction until the N-th effect
has committed; then the effects table must hold exactly one row per event. Any other count
(a duplicate or a lost effect) is printed and the exit status is 1.

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
from dataclasses import dataclass
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
from sqlalchemy import (  # noqa: E402
    Column,
    Integer,
    MetaData,
    String,
    Table,
    event,
    func,
    insert,
    select,
)

from shared.bus import (  # noqa: E402
    Delivery,
    JetStreamPublisher,
    ensure_stream,
    make_broker,
    subscribe_batch,
)
from shared.bus import subscribe as subscribe_event  # noqa: E402
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
# bench/README.md, before the batched path existed (idle 2-core VM, N=1000).
BEFORE = {"sqlite": 211.1, "postgres": 328.0}

metadata = MetaData()
effects = Table(
    "bench_effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("task_name", String(100), nullable=False),
)


@dataclass
class Result:
    seconds: float
    effects: int = 0
    distinct: int = 0
    expected: int = 0

    @property
    def duplicates(self) -> int:
        return self.effects - self.distinct


def deadline_s(n: int) -> float:
    return 60.0 + n / 10  # only to fail instead of hanging; far above any sane run


class Committed:
    """Counts effects as their transactions commit; wakes the bench at a target."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.reached = asyncio.Event()

    def add(self, n: int) -> None:
        self.count += n
        if self.count >= self.target:
            self.reached.set()

    async def wait_for(self, target: int, n: int) -> None:
        self.target = target
        if self.count < target:
            self.reached.clear()
            await asyncio.wait_for(self.reached.wait(), deadline_s(n))


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
    try:
        await nc.jetstream().purge_stream(STREAM_NAME)
    finally:
        await nc.close()


async def project_phase(nats_url: str, db_url: str, n: int, *, batched: bool) -> Result:
    await purge(nats_url)
    # Two Database objects: separate pools, as a producer and a consumer service would have.
    producer_db, consumer_db = Database(db_url), Database(db_url)
    async with producer_db.engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)

    committed = Committed()

    async def on_cycle(cycle: CycleRequested, delivery: Delivery) -> None:
        async with consumer_db.uow() as uow:
            if not await uow.claim(delivery.consumer, cycle):
                return
            await uow.session.execute(
                insert(effects).values(event_id=str(cycle.event_id), task_name=cycle.task_name)
            )
            await uow.commit()
        committed.add(1)

    async def on_batch(uow: UnitOfWork, cycles: list[CycleRequested]) -> None:
        await uow.session.execute(
            insert(effects),
            [{"event_id": str(c.event_id), "task_name": c.task_name} for c in cycles],
        )
        # The kernel commits after the handler returns; count the effects once it has.
        event.listen(uow.session.sync_session, "after_commit", lambda _: committed.add(len(cycles)))

    stop = asyncio.Event()
    async with AsyncExitStack() as stack:
        stack.push_async_callback(consumer_db.dispose)
        stack.push_async_callback(producer_db.dispose)
        consumer = await stack.enter_async_context(make_broker(nats_url, client_name="consumer"))
        service = f"bench-{'batch' if batched else 'msg'}"
        if batched:
            batch = subscribe_batch(
                CycleRequested, on_batch, service=service, db=consumer_db, batch_size=BATCH
            )
            batch_task = asyncio.create_task(batch.run(consumer, stop))
            stack.push_async_callback(stop_task, stop, batch_task)
        else:
            # As a service would (shared/runtime/service.py): one at a time on SQLite.
            policy = ConsumerPolicy(batch_size=1 if consumer_db.dialect == "sqlite" else 4)
            subscribe_event(
                consumer, CycleRequested, on_cycle, service=service, db=consumer_db, policy=policy
            )
        await consumer.start()
        producer = await stack.enter_async_context(make_broker(nats_url, client_name="producer"))
        await producer.connect()
        relay = OutboxRelay(
            producer_db, JetStreamPublisher(producer), producer=PRODUCER, poll_interval_s=0.1
        )
        relay_task = asyncio.create_task(relay.run(stop))
        stack.push_async_callback(stop_task, stop, relay_task)

        await stage(producer_db, WARMUP)
        await committed.wait_for(WARMUP, WARMUP)
        started = time.perf_counter()
        await stage(producer_db, n)
        await committed.wait_for(WARMUP + n, n)
        result = Result(time.perf_counter() - started, expected=WARMUP + n)

        await asyncio.sleep(0.5)  # a late duplicate would land here
        async with consumer_db.uow() as uow:
            result.effects = await uow.session.scalar(select(func.count()).select_from(effects))
            result.distinct = await uow.session.scalar(
                select(func.count(effects.c.event_id.distinct()))
            )
    return result


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


async def raw_phase(nats_url: str, n: int) -> Result:
    await purge(nats_url)
    # The same size as a relayed event, so all paths move the same bytes.
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
        return Result(time.perf_counter() - started)
    finally:
        await nc.close()


async def database(kind: str, tmp: Path, stack: AsyncExitStack) -> str:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    name = f"distillery_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()

    async def drop() -> None:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    stack.push_async_callback(drop)
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql:", "postgresql+asyncpg:")
    return f"{base}/{name}"


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
        await ensure_stream(server.url)
        db_url = await database(kind, tmp, stack)
        await asyncio.to_thread(upgrade, db_url)
        return {
            "raw": await raw_phase(server.url, n),
            "per-message": await project_phase(server.url, db_url, n, batched=False),
            "batched": await project_phase(server.url, db_url, n, batched=True),
        }


def report(kind: str, n: int, results: dict[str, Result]) -> bool:
    raw = results["raw"]
    labels = {
        "raw": "raw nats-py (PubAck + explicit ack)",
        "per-message": "per-message (subscribe)",
        "batched": f"batched (subscribe_batch, {BATCH})",
    }
    print(f"db={kind}  N={n}  (warm-up {WARMUP} per path, untimed)")
    print(f"{'path':<38}{'seconds':>9}{'per second':>12}{'/ raw':>8}{'effects':>9}{'dupes':>7}")
    ok = True
    for key, res in results.items():
        rate = n / res.seconds
        line = f"{labels[key]:<38}{res.seconds:>9.3f}{rate:>12.1f}{raw.seconds / res.seconds:>8.3f}"
        if key != "raw":
            line += f"{res.effects:>9}{res.duplicates:>7}"
            if res.effects != res.expected or res.distinct != res.expected:
                ok = False
                line += f"  EXPECTED {res.expected} distinct effects"
        print(line)
    per_message = n / results["per-message"].seconds
    batched = raw.seconds / results["batched"].seconds
    print(
        f"goal batched >= 0.5 x raw: {batched:.3f} x raw, {'met' if batched >= 0.5 else 'NOT met'}"
    )
    before = BEFORE[kind]
    print(
        f"goal per-message >= 3 x {before}/s (bench/README.md before): "
        f"{per_message / before:.2f} x, {'met' if per_message >= 3 * before else 'NOT met'}"
    )
    return ok


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
        results = asyncio.run(run(args.db, n))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    return 0 if report(args.db, n, results) else 1


if __name__ == "__main__":
    sys.exit(main())
