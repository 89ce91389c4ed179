"""synth-data as a real process (`python -m shared.runtime.serve synth_data.main:create_app`)
on the session's nats-server: task.registered and cycle.requested go in through the outbox and
the relay, synth.completed comes out on the stream."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from shared.artifacts import LocalArtifactStore
from shared.bus import JetStreamPublisher, make_broker
from shared.db import Database
from shared.events.catalog import CycleRequested, SynthCompleted
from shared.relay import OutboxRelay
from shared.tasks import parse_spec
from shared.tasks.registry import register
from synth_data.repository import get_run
from tests.fixtures.processes import serve, stop
from tests.fixtures.streams import stream_messages
from tests.fixtures.teacher_server import running, toy_spec

PRODUCER = "synth-process-test"
pytestmark = pytest.mark.slow


def serve_synth(nats_url: str, db_url: str, artifacts: Path, log: Path) -> subprocess.Popen:
    return serve(
        "synth_data.main:create_app",
        nats_url,
        db_url,
        log=log,
        DISTILLERY_ARTIFACT_STORE="local",
        DISTILLERY_ARTIFACT_ROOT=str(artifacts),
        DISTILLERY_ACK_WAIT_S="10",
        SYNTH_DATA_BACKOFF_BASE_S="0.05",
        SYNTH_DATA_PROGRESS_EVERY="4",
    )


async def publish(db: Database, nats_url: str, *events) -> None:
    async with db.uow() as uow:
        await uow.publish(*events)
        await uow.commit()
    async with make_broker(nats_url, client_name=PRODUCER) as broker:
        await broker.connect()
        await OutboxRelay(db, JetStreamPublisher(broker), producer=PRODUCER).drain()


async def completed(nats_url: str, cycle_id: uuid.UUID) -> list[SynthCompleted]:
    messages = await stream_messages(nats_url, SynthCompleted.subject)
    events = [SynthCompleted.model_validate_json(m.data) for m in messages]
    return [e for e in events if e.cycle_id == cycle_id]


async def test_the_service_process_answers_a_cycle(nats_server, db: Database, tmp_path):
    artifacts = tmp_path / "artifacts"
    store = LocalArtifactStore(artifacts)
    log = tmp_path / "synth-data.log"
    with running() as teacher:
        spec = parse_spec(toy_spec(teacher.url, synthesis={"examples": 8}))
        ref = store.put_bytes(spec.model_dump_json().encode(), media_type="application/json")
        # Applied (the registry row and task.registered, in one transaction); no spec in the
        # request: the service must find the latest version in the registry.
        await register(db, spec.name, ref, PRODUCER)
        request = CycleRequested(cycle_id=uuid.uuid4(), task_name=spec.name, producer=PRODUCER)
        proc = serve_synth(nats_server.url, db.url, artifacts, log)
        try:
            await publish(db, nats_server.url, request)
            deadline = time.monotonic() + 90
            while not (answers := await completed(nats_server.url, request.cycle_id)):
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                await asyncio.sleep(0.3)
        finally:
            stop(proc)

    [done] = answers
    assert done.causation_id == request.event_id and done.producer == "synth-data"
    assert (done.task_spec, done.task_version, done.examples) == (ref, 1, 8)
    assert sum(done.examples_per_slice.values()) == 8
    rows = [json.loads(line) for line in store.get_bytes(done.batch).decode().splitlines()]
    assert len(rows) == 8 and all(r["output"] for r in rows)
    run = await get_run(db, str(request.cycle_id))
    assert run.status == "completed" and run.batch_sha256 == done.batch.sha256
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    progress = [x for x in lines if x.get("event") == "synthesis progress"]
    assert [p["done"] for p in progress][-1] == 8 and progress[0]["total"] == 8
