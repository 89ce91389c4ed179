"""synth-data as a real process whose teacher is down past every retry: the stage gives up and
the cycle ends. The operator sees it with `distillery cycle status` against the same database:
cycle.failed (stage synth, the teacher's failure as the reason), a dead letter, and no
synth.completed."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Row, select

from shared.artifacts import LocalArtifactStore
from shared.db import Database, OutboxRow
from shared.events.catalog import CycleFailed, CycleRequested, DeadLettered, SynthCompleted
from shared.runtime.natsd import NatsServer, free_port
from shared.tasks import parse_spec
from shared.tasks.registry import register
from synth_data.repository import get_run
from tests.fixtures.processes import serve, stop
from tests.fixtures.streams import stream_messages
from tests.fixtures.teacher_server import toy_spec
from tests.integration.test_cli import distillery_cmd
from tests.integration.test_synth_process import PRODUCER, publish

pytestmark = pytest.mark.slow
MAX_DELIVER = 2


async def distillery(home: Path, db_url: str, *args: str) -> str:
    """The operator's `distillery` command, a process of its own as tests/integration/test_cli.py
    runs it, isolated from the caller's DISTILLERY_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    proc = await asyncio.create_subprocess_exec(
        *distillery_cmd(),
        *args,
        "--home",
        str(home),
        env={**env, "DISTILLERY_DATABASE_URL": db_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, (out + err).decode()
    return out.decode()


async def cycle_rows(db: Database, cycle_id: uuid.UUID) -> list[Row]:
    """(subject, payload, sent_at) of every outbox row of the cycle."""
    stmt = (
        select(OutboxRow.subject, OutboxRow.payload, OutboxRow.sent_at)
        .where(OutboxRow.cycle_id == str(cycle_id))
        .order_by(OutboxRow.id)
    )
    async with db.uow() as uow:
        return list((await uow.session.execute(stmt)).all())


async def test_a_teacher_down_past_its_retries_ends_the_cycle(
    private_nats: NatsServer, db: Database, tmp_path: Path
):
    artifacts = tmp_path / "artifacts"
    store = LocalArtifactStore(artifacts)
    # A loopback port with nothing listening: every request is refused at once.
    down = f"http://127.0.0.1:{free_port()}/v1"
    spec = parse_spec(toy_spec(down, synthesis={"examples": 2}))
    ref = store.put_bytes(spec.model_dump_json().encode(), media_type="application/json")
    await register(db, spec.name, ref, PRODUCER)  # as `distillery task apply` does
    request = CycleRequested(
        cycle_id=uuid.uuid4(),
        task_name=spec.name,
        task_version=1,
        task_spec=ref,
        producer=PRODUCER,
    )
    log = tmp_path / "synth-data.log"
    proc = serve(
        "synth_data.main:create_app",
        private_nats.url,
        db.url,
        log=log,
        DISTILLERY_ARTIFACT_STORE="local",
        DISTILLERY_ARTIFACT_ROOT=str(artifacts),
        DISTILLERY_MAX_DELIVER=str(MAX_DELIVER),
        SYNTH_DATA_MAX_ATTEMPTS="2",
        SYNTH_DATA_BACKOFF_BASE_S="0.05",
        SYNTH_DATA_BACKOFF_CAP_S="0.1",
    )
    try:
        await publish(db, private_nats.url, request)
        deadline = time.monotonic() + 90
        # Until cycle.failed is committed and every event of the cycle has been relayed.
        while not (
            (rows := await cycle_rows(db, request.cycle_id))
            and any(r.subject == CycleFailed.subject for r in rows)
            and all(r.sent_at is not None for r in rows)
        ):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.3)
    finally:
        stop(proc)

    by_subject = {r.subject: r.payload for r in rows}
    assert SynthCompleted.subject not in by_subject
    failed = CycleFailed.model_validate_json(by_subject[CycleFailed.subject])
    assert failed.stage == "synth" and failed.causation_id == request.event_id
    assert f"gave up after {MAX_DELIVER} deliveries" in failed.reason
    assert (
        "teacher at 127.0.0.1" in failed.reason
        and "still failing after 2 attempts" in failed.reason
    )
    letter = DeadLettered.model_validate_json(by_subject[DeadLettered.subject])
    assert letter.error_kind == "exhausted" and letter.reason == failed.reason
    assert letter.consumer == "synth-data--cycle-requested-v1"
    run = await get_run(db, str(request.cycle_id))
    assert run.status == "failed" and run.reason == failed.reason
    assert await stream_messages(private_nats.url, SynthCompleted.subject) == []
    [relayed] = await stream_messages(private_nats.url, CycleFailed.subject)
    assert CycleFailed.model_validate_json(relayed.data).event_id == failed.event_id

    text = await distillery(tmp_path / "home", db.url, "cycle", "status", str(request.cycle_id))
    assert f"cycle {request.cycle_id}" in text and "task toy-triage" in text
    assert CycleRequested.subject in text and CycleFailed.subject in text
    assert SynthCompleted.subject not in text
    assert "dead-lettered by synth-data--cycle-requested-v1 (exhausted): " in text
    # The terminal cycle.failed line names the stage and the teacher's failure.
    assert f"✗ synth stage: gave up after {MAX_DELIVER} deliveries; last error: " in text
    [failed_line] = [x for x in text.splitlines() if "✗ synth stage: " in x]
    assert "teacher at 127.0.0.1" in failed_line
    assert "still failing after 2 attempts" in failed_line
    assert text.strip().splitlines()[-1] == (
        "3 events · 0 pending · 1 dead-lettered · last stage: cycle.failed"
    )
