"""Curation gives up and the cycle ends: a corrupt or unreadable input on the first delivery, a
failure that keeps coming back on the last one. Through the stage template in process, on
PostgreSQL and SQLite; and as a real service process on the session's nats-server, read back
with `distillery cycle status` as an operator would."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from curation.models import CurationRun
from curation.service import Deps
from curation.settings import CurationSettings
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.artifacts.base import object_key
from shared.bus import JetStreamPublisher, make_broker
from shared.cli.main import app
from shared.db import Database
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleFailed, DatasetPublished, DeadLettered, SynthCompleted
from shared.relay import OutboxRelay
from tests.fixtures.processes import serve, stop
from tests.integration.test_curation_service import (
    apply_spec,
    count,
    deliver,
    outbox,
    store,
    synth_event,
    synth_rows,
)

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def _keep_logging_config() -> Iterator[None]:
    # The CLI configures structlog for itself; later tests get theirs back.
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def corrupt(root: Path, ref: ArtifactRef) -> None:
    """Change the stored bytes after their sha256 was taken (same size: only the digest shows)."""
    path = root / object_key(ref.sha256)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))


async def batch_event(artifacts: AsyncArtifactStore, spec_ref: ArtifactRef, data: bytes):
    ref = await artifacts.put_bytes(data, media_type="application/jsonl")
    event = await synth_event(artifacts, spec_ref, synth_rows(4))
    return event.model_copy(update={"batch": ref})


async def bad_input(kind: str, artifacts: AsyncArtifactStore, root: Path):
    """A synth.completed whose input is broken in `kind` way, and what the reason must name."""
    spec_ref = await apply_spec(artifacts)
    if kind == "sha256":
        event = await synth_event(artifacts, spec_ref, synth_rows(4))
        corrupt(root, event.batch)
        return event, ["synth batch", event.batch.uri, "expected sha256"]
    if kind == "not utf-8":
        event = await batch_event(artifacts, spec_ref, b'{"input": "caf\xe9"}\n')
        return event, ["synth batch", event.batch.uri, "not UTF-8"]
    if kind == "not jsonl":
        event = await batch_event(artifacts, spec_ref, b"input,output\nhello,world\n")
        return event, ["synth batch", event.batch.uri, "not JSONL"]
    assert kind == "golden set"
    golden = b"id;input\ng1;hello\n"
    event = await synth_event(artifacts, await apply_spec(artifacts, golden), synth_rows(4))
    golden_ref = await artifacts.put_bytes(golden)  # content-addressed: the spec's ref
    return event, [golden_ref.uri, "golden set"]


@pytest.mark.parametrize("kind", ["sha256", "not utf-8", "not jsonl", "golden set"])
async def test_a_broken_input_ends_the_cycle_on_the_first_delivery(
    db: Database, tmp_path: Path, kind: str
):
    artifacts = store(tmp_path)
    event, named = await bad_input(kind, artifacts, tmp_path / "artifacts")
    d = Deps(db=db, artifacts=artifacts, settings=CurationSettings())

    assert await deliver(d, event) == "dead_lettered_permanent"

    [failed] = await outbox(db, CycleFailed)
    assert failed.stage == "curation" and failed.causation_id == event.event_id
    assert all(part in failed.reason for part in named), failed.reason
    [letter] = await outbox(db, DeadLettered)
    assert letter.error_kind == "permanent" and letter.deliveries == 1
    assert letter.original_event_id == str(event.event_id) and letter.reason == failed.reason
    assert await outbox(db, DatasetPublished) == []
    assert await count(db, CurationRun) == 0
    # The reject got lost and JetStream delivers again: nothing more happens.
    assert await deliver(d, event, delivery=2) == "acked"
    assert len(await outbox(db, CycleFailed)) == 1 and len(await outbox(db, DeadLettered)) == 1


class Unreachable(LocalArtifactStore):
    """Reads fail like an object store that is down: not the input's fault, worth retrying."""

    def get_bytes(self, ref: ArtifactRef) -> bytes:
        raise ConnectionError("object store unreachable")


async def test_a_failure_that_persists_ends_the_cycle_on_the_last_delivery(
    db: Database, tmp_path: Path
):
    artifacts = store(tmp_path)
    event = await synth_event(artifacts, await apply_spec(artifacts), synth_rows(4))
    down = AsyncArtifactStore(Unreachable(tmp_path / "artifacts"))
    d = Deps(db=db, artifacts=down, settings=CurationSettings())

    assert await deliver(d, event) == "retried"
    assert await outbox(db, CycleFailed) == [] and await outbox(db, DeadLettered) == []
    assert await deliver(d, event, delivery=3) == "dead_lettered_exhausted"
    [failed] = await outbox(db, CycleFailed)
    assert failed.stage == "curation"
    assert "after 3 deliveries" in failed.reason and "object store unreachable" in failed.reason
    [letter] = await outbox(db, DeadLettered)
    assert letter.error_kind == "exhausted" and letter.deliveries == 3


# --- the service as a process, read back through the CLI ----------------------------------------


def cycle_status(home: Path, db_url: str, cycle_id: uuid.UUID):
    isolated: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DISTILLERY_")}
    env = {**isolated, "DISTILLERY_DATABASE_URL": db_url}
    return runner.invoke(app, ["cycle", "status", str(cycle_id), "--home", str(home)], env=env)


async def wait_for_answers(db: Database, proc, cycles: set[uuid.UUID]) -> list[CycleFailed]:
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, f"service exited with {proc.returncode}"
        failed = [f for f in await outbox(db, CycleFailed) if f.cycle_id in cycles]
        if {f.cycle_id for f in failed} == cycles:
            return failed
        assert time.monotonic() < deadline, "no cycle.failed from the service in time"
        await asyncio.sleep(0.5)


@pytest.mark.slow
async def test_the_service_ends_the_cycle_of_a_corrupt_batch(
    nats_server, db: Database, tmp_path: Path
):
    artifacts = store(tmp_path)
    spec_ref = await apply_spec(artifacts)
    corrupted = await synth_event(artifacts, spec_ref, synth_rows(6))
    corrupt(tmp_path / "artifacts", corrupted.batch)
    latin1 = await batch_event(artifacts, spec_ref, b'{"input": "caf\xe9", "output": "x"}\n')
    events: dict[uuid.UUID, SynthCompleted] = {e.cycle_id: e for e in (corrupted, latin1)}
    async with db.uow() as uow:
        await uow.publish(*events.values())
        await uow.commit()
    async with make_broker(nats_server.url, client_name="synth-data") as broker:
        await broker.connect()
        relay = OutboxRelay(db, JetStreamPublisher(broker), producer="synth-data")
        assert await relay.drain() == 2

    proc = serve(
        "curation.main:create_app",
        nats_server.url,
        db.url,
        log=tmp_path / "curation.log",
        DISTILLERY_ARTIFACT_ROOT=str(tmp_path / "artifacts"),
        DISTILLERY_ACK_WAIT_S="10",
        DISTILLERY_MAX_DELIVER="5",  # so giving up on delivery 1 shows it was not exhaustion
    )
    try:
        failed = await wait_for_answers(db, proc, set(events))
    finally:
        stop(proc)

    assert {f.stage for f in failed} == {"curation"}
    letters = {x.original_event_id: x for x in await outbox(db, DeadLettered)}
    for cycle_id, event in events.items():
        letter = letters[str(event.event_id)]
        assert (letter.error_kind, letter.deliveries) == ("permanent", 1)
        # The CLI runs its own event loop: off this test's loop, in a thread.
        status = await asyncio.to_thread(cycle_status, tmp_path, db.url, cycle_id)
        assert status.exit_code == 0, status.output
        text = status.stdout
        assert CycleFailed.subject in text and "by curation" in text
        assert "dead-lettered by curation--synth-completed-v1 (permanent)" in text
        assert "synth batch" in text and event.batch.uri in text, text
        assert (
            text.strip().splitlines()[-1].endswith("1 dead-lettered · last stage: cycle.failed")
        ), text
        assert DatasetPublished.subject not in text
    reasons = {f.cycle_id: f.reason for f in failed}
    assert "expected sha256" in reasons[corrupted.cycle_id]
    assert "not UTF-8" in reasons[latin1.cycle_id]
    assert await outbox(db, DatasetPublished) == []
