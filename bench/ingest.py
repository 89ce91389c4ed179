"""Trace ingest: traces/s the feedback-collector persists from JetStream, next to raw batched
inserts of the same rows into the same database, in one run.

    .venv/bin/python bench/ingest.py --db postgres --n 20000

Both phases write `feedback_collector_traces` rows built by the service's own `trace_row`.
- project: N `traffic.logged` events already on the stream (a backlog, as after a gateway
  burst) drained by the service's batched consumer: validate, claim (inbox), insert, match
  pending feedback, commit, ack. Timed from the consumer's start to the last row committed;
  zero loss is checked (N distinct rows, nothing pending or unacked).
- raw: the same rows, inserted `--batch` at a time with one executemany and a commit each,
  no bus and no inbox: the floor any ingest on this database pays.
The two phases take turns, `--rounds` times (fresh events each round, the table emptied
before each phase), and the medians are compared: on a shared machine either phase alone can
be off by a third from one minute to the next.
Goals (issue 14): project >= 0.5 x raw and >= 5,000 traces/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import nats
from sqlalchemy import delete, func, insert, select
from sqlalchemy import event as sa_event

import shared.bus as kernel
from feedback_collector.models import TraceRow
from feedback_collector.service import ingest_traces, trace_row
from shared.db import Database, UnitOfWork
from shared.db.migrate import upgrade
from shared.events import STREAM_NAME, ConsumerPolicy, TrafficLogged
from shared.logs import configure_logging
from shared.runtime.natsd import NatsServer

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def events(n: int) -> list[TrafficLogged]:
    return [
        TrafficLogged(
            producer="deployer",
            request_id=uuid.uuid4(),
            task_name="support",
            deployment_id=uuid.uuid4(),
            arm="student",
            messages=[{"role": "user", "content": f"Where is my order {i}? It was due Monday."}],
            completion=f'{{"intent": "order_status", "order": {i}}}',
            latency_ms=42.0 + i % 100,
            model_version="sha256:abc",
            stage="ab",
        )
        for i in range(n)
    ]


async def count(db: Database) -> int:
    async with db.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(TraceRow)) or 0)


def msg_id(e: TrafficLogged) -> dict[str, str]:
    return {"Nats-Msg-Id": str(e.event_id)}


async def publish(url: str, batch: list[TrafficLogged]) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        for start in range(0, len(batch), 500):
            await asyncio.gather(
                *(
                    js.publish(
                        e.subject,
                        e.model_dump_json().encode(),
                        headers={"Nats-Msg-Id": str(e.event_id)},
                    )
                    for e in batch[start : start + 500]
                )
            )
    finally:
        await nc.close()


async def project_phase(url: str, db: Database, n: int, size: int) -> float:
    async with db.uow() as uow:
        await uow.session.execute(delete(TraceRow))
        await uow.commit()
    # The events exist only as messages on the stream while they are consumed: a list of N
    # held here would be traversed by every garbage collection the consumer's allocations
    # trigger (profiled: it tripled the time of the consumer's row building), a cost the
    # service, which holds one batch, never pays.
    await publish(url, events(n))
    committed, done = [0], asyncio.Event()

    def counted(k: int) -> None:
        committed[0] += k
        if committed[0] >= n:
            done.set()

    async def handler(uow: UnitOfWork, traces: list[TrafficLogged]) -> None:
        await ingest_traces(uow, traces)
        # Counted when the kernel's commit lands. Polling the table for its row count instead
        # took half of this process's CPU from the consumer it was timing (profiled).
        sa_event.listen(uow.session.sync_session, "after_commit", lambda _: counted(len(traces)))

    # claim=False as feedback_collector.handlers wires it: the trace row is its own inbox row.
    consumer = kernel.subscribe_batch(
        TrafficLogged, handler, service="feedback-collector", db=db,
        policy=ConsumerPolicy(ack_wait_s=30), batch_size=size, poll_s=0.2, claim=False,
    )  # fmt: skip
    stop = asyncio.Event()
    async with kernel.make_broker(url, client_name="bench") as broker:
        await broker.connect()
        started = time.perf_counter()
        task = asyncio.create_task(consumer.run(broker, stop))
        await asyncio.wait_for(done.wait(), timeout=max(60.0, n / 100))
        elapsed = time.perf_counter() - started
        stop.set()
        await task
    nc = await nats.connect(url)
    info = await nc.jetstream().consumer_info(STREAM_NAME, consumer.name)
    await nc.close()
    async with db.uow() as uow:
        distinct = await uow.session.scalar(select(func.count(TraceRow.event_id.distinct())))
    assert distinct == n and info.num_pending == 0 and info.num_ack_pending == 0, (
        f"loss or leftovers: {distinct} rows, pending {info.num_pending}/{info.num_ack_pending}"
    )
    return elapsed


async def raw_phase(db: Database, n: int, size: int) -> float:
    async with db.uow() as uow:
        await uow.session.execute(delete(TraceRow))
        await uow.commit()
    rows = [trace_row(e) for e in events(n)]
    started = time.perf_counter()
    for start in range(0, len(rows), size):
        async with db.uow() as uow:
            await uow.session.execute(insert(TraceRow.__table__), rows[start : start + size])
            await uow.commit()
    elapsed = time.perf_counter() - started
    assert await count(db) == n
    return elapsed


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run(kind: str, n: int, size: int, rounds: int) -> None:
    configure_logging("WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="distillery-ingest-"))
    server = NatsServer(tmp / "nats")
    async with AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        server.start()
        stack.callback(server.stop)
        await kernel.ensure_stream(server.url)
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        if kind == "postgres":
            name = f"distillery_bench_{uuid.uuid4().hex[:12]}"
            await admin(f'CREATE DATABASE "{name}"')
            stack.push_async_callback(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        stack.push_async_callback(db.dispose)
        projects, raws = [], []
        for _ in range(rounds):
            projects.append(await project_phase(server.url, db, n, size))
            raws.append(await raw_phase(db, n, size))
    project, raw = statistics.median(projects), statistics.median(raws)
    print(f"{kind}: {n} traces, batch {size}, {rounds} rounds (medians; every round's rate)")
    print(f"  raw batched inserts   {n / raw:10.0f} traces/s  {_rates(n, raws)}")
    print(f"  feedback-collector    {n / project:10.0f} traces/s  {_rates(n, projects)}, zero loss")
    ratio = raw / project
    met = "met" if ratio >= 0.5 else "NOT met"
    print(f"  ratio project / raw   {ratio:10.2f}   goal >= 0.5: {met}")
    fast = n / project >= 5000
    print(f"  goal >= 5,000 traces/s ({kind}): {'met' if fast else 'NOT met'}")


def _rates(n: int, seconds: list[float]) -> str:
    return "(" + ", ".join(f"{n / s:.0f}" for s in seconds) + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.n < 1 or args.batch < 1 or args.rounds < 1:
        parser.error("--n, --batch and --rounds must be at least 1")
    asyncio.run(run(args.db, args.n, args.batch, args.rounds))


if __name__ == "__main__":
    main()
