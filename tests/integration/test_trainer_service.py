"""The trainer as a real process on the session's nats-server and a real PostgreSQL:
dataset.published in → training.progressed + training.completed out; a redelivered event
changes nothing; a spec without an imported base model fails the cycle with the fix named."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path

import nats
import pytest
from sqlalchemy import func, select

from shared.artifacts import LocalArtifactStore
from shared.bus import durable_name
from shared.db import Database
from shared.events import STREAM_NAME
from shared.events.catalog import (
    CycleFailed,
    DatasetPublished,
    TrainingCompleted,
    TrainingProgressed,
)
from shared.models import read_manifest, store_model_dir
from tests.fixtures.datasets import store_dataset
from tests.fixtures.processes import serve, stop
from tests.fixtures.streams import stream_messages
from trainer.domain import run_id_for
from trainer.models import TrainerRun, TrainerTrial

CONSUMER = durable_name("trainer", DatasetPublished)
TRAINING = {
    "trials": 2,
    "batch_size": 4,
    "search": {
        "rank": [4, 8],
        "alpha": [8],
        "learning_rate": {"low": 2e-3, "high": 8e-3},
        "epochs": [1],
    },
}
pytestmark = pytest.mark.slow


def serve_trainer(nats_url: str, db_url: str, home: Path) -> subprocess.Popen:
    return serve(
        "trainer.main:create_app",
        nats_url,
        db_url,
        DISTILLERY_HOME=str(home),
        DISTILLERY_ARTIFACT_ROOT=str(home / "artifacts"),
        TRAINER_CHECKPOINT_STEPS="2",
        TRAINER_PROGRESS_INTERVAL_S="0",
        TRAINER_EVALUATIONS_PER_TRIAL="2",
    )


async def publish(nats_url: str, event: DatasetPublished, msg_id: str | None = None) -> int:
    """Publish onto the stream; a different msg id gets past JetStream's duplicate window."""
    nc = await nats.connect(nats_url)
    try:
        ack = await nc.jetstream().publish(
            event.subject,
            event.model_dump_json().encode(),
            stream=STREAM_NAME,
            headers={"Nats-Msg-Id": msg_id or str(event.event_id)},
        )
        return ack.seq
    finally:
        await nc.close()


async def acked_past(nats_url: str, seq: int) -> bool:
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().consumer_info(STREAM_NAME, CONSUMER)
        return info.ack_floor.stream_seq >= seq and info.num_ack_pending == 0
    finally:
        await nc.close()


async def events_of(nats_url: str, cls, cycle_id: uuid.UUID) -> list:
    found = [cls.model_validate_json(m.data) for m in await stream_messages(nats_url, cls.subject)]
    return [e for e in found if e.cycle_id == cycle_id]


async def wait_for(check, proc: subprocess.Popen, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        assert proc.poll() is None, f"the trainer exited with {proc.returncode}"
        await asyncio.sleep(0.5)
    raise AssertionError("condition not met in time")


async def count(db_url: str, stmt) -> int:
    db = Database(db_url)
    try:
        async with db.uow() as uow:
            return int(await uow.session.scalar(stmt))
    finally:
        await db.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_trainer_process_trains_reports_progress_and_is_idempotent(
    nats_server, db_url, tmp_path, tiny_model_dir
):
    store = LocalArtifactStore(tmp_path / "artifacts")
    base = store_model_dir(store, tiny_model_dir, "tiny-llama")
    dataset = store_dataset(store, base_model_ref=base, train_rows=16, training=TRAINING)
    event = dataset.published()
    unimported = store_dataset(store, base_model_ref=None, train_rows=4, seed=1).published()
    run_id = run_id_for(event.event_id)

    service = serve_trainer(nats_server.url, db_url, tmp_path)
    try:
        await publish(nats_server.url, unimported)
        await publish(nats_server.url, event)

        failed = await wait_for(
            lambda: events_of(nats_server.url, CycleFailed, unimported.cycle_id), service
        )
        assert failed[0].stage == "training"
        assert "distillery models import --name tiny-llama" in failed[0].reason

        done = await wait_for(
            lambda: events_of(nats_server.url, TrainingCompleted, event.cycle_id), service
        )
        seq = await publish(nats_server.url, event, msg_id=f"redelivery-{uuid.uuid4()}")
        await wait_for(lambda: acked_past(nats_server.url, seq), service, timeout=60)
    finally:
        stop(service)

    assert len(done) == 1
    completed = done[0]
    assert completed.causation_id == event.event_id and completed.run_id == run_id
    assert completed.dataset_version == event.dataset_version and completed.base_model == base
    manifest = read_manifest(store, completed.adapter)
    assert manifest["kind"] == "adapter" and manifest["base_model"] == base.sha256
    assert sorted(manifest["files"]) == ["adapter_config.json", "adapter_model.safetensors"]
    report = json.loads(store.get_bytes(completed.report))
    assert [t["number"] for t in report["trials"]] == [0, 1]
    assert report["hyperparameters"] == {
        k: v for k, v in completed.hyperparameters.items() if k != "trial"
    }
    assert report["memory"]["peak_rss_mib"] > 0 and report["tokens_per_second"] > 0

    progress = await events_of(nats_server.url, TrainingProgressed, event.cycle_id)
    per_trial = {t: sorted(p.step for p in progress if p.trial == t) for t in (0, 1)}
    assert per_trial == {0: [1, 2, 3, 4], 1: [1, 2, 3, 4]}
    assert all(p.total_steps == 4 and p.loss is not None for p in progress)

    # The redelivered event changed nothing: one answer, one run row.
    assert len(await events_of(nats_server.url, TrainingCompleted, event.cycle_id)) == 1
    # Only this test's cycles: the session's stream also holds other tests' dataset.published.
    ours = [str(event.cycle_id), str(unimported.cycle_id)]
    runs = select(func.count()).select_from(TrainerRun).where(TrainerRun.cycle_id.in_(ours))
    assert await count(db_url, runs) == 2  # + the failed one
    trials = select(func.count()).where(
        TrainerTrial.run_id == str(run_id), TrainerTrial.state == "complete"
    )
    assert await count(db_url, trials) == 2
