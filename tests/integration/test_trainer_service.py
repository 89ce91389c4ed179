"""The trainer as a real process on the session's nats-server and a real database:
dataset.published in → training.progressed + training.completed out; a redelivered event
changes nothing; a spec without an imported base model fails the cycle with the fix named; a
spec whose base is an adapter for another base ends the cycle on its first delivery."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nats
import numpy as np
import pytest
from safetensors.numpy import save_file
from sqlalchemy import func, select

from shared.artifacts import LocalArtifactStore
from shared.bus import JetStreamPublisher, durable_name, make_broker
from shared.db import Database, OutboxRow
from shared.events import STREAM_NAME
from shared.events.catalog import (
    CycleFailed,
    DatasetPublished,
    DeadLettered,
    TrainingCompleted,
    TrainingProgressed,
)
from shared.models import read_manifest, store_model_dir
from shared.relay import OutboxRelay
from tests.fixtures.datasets import store_dataset
from tests.fixtures.processes import serve, stop
from tests.fixtures.streams import stream_messages
from trainer.domain import run_id_for
from trainer.models import TrainerRun, TrainerTrial

ROOT = Path(__file__).resolve().parents[2]

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
    # 4 rows of the base's own general answers join the 16 task rows (trainer/replay.py).
    "replay": {"share": 0.25, "max_new_tokens": 8},
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
    # The quantizer calibrates on the rows the adapter learnt from.
    assert manifest["extra"]["train_split"] == event.train.model_dump(mode="json")
    report = json.loads(store.get_bytes(completed.report))
    assert [t["number"] for t in report["trials"]] == [0, 1]
    assert report["hyperparameters"] == {
        k: v for k, v in completed.hyperparameters.items() if k != "trial"
    }
    assert report["memory"]["peak_rss_mib"] > 0 and report["tokens_per_second"] > 0
    assert report["examples"]["train"] == 16 and report["examples"]["replay"] == 4

    progress = await events_of(nats_server.url, TrainingProgressed, event.cycle_id)
    per_trial = {t: sorted(p.step for p in progress if p.trial == t) for t in (0, 1)}
    # (16 task + 4 replay rows) / batch 4: five steps a trial.
    assert per_trial == {0: [1, 2, 3, 4, 5], 1: [1, 2, 3, 4, 5]}
    assert all(p.total_steps == 5 and p.loss is not None for p in progress)

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


def store_adapter(store: LocalArtifactStore, folder: Path, trained_on: str):
    """An adapter manifest as the trainer itself writes one: LoRA files, kind adapter."""
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    save_file({"lora_A": np.zeros((4, 8), dtype=np.float32)}, folder / "adapter_model.safetensors")
    return store_model_dir(store, folder, "other-task", kind="adapter", base_model=trained_on)


async def publish_as_curation(nats_url: str, db_url: str, event: DatasetPublished) -> None:
    """Committed to the outbox and relayed, as the curation service does it."""
    db = Database(db_url)
    try:
        async with db.uow() as uow:
            await uow.publish(event)
            await uow.commit()
        async with make_broker(nats_url, client_name="curation") as broker:
            await broker.connect()
            await OutboxRelay(db, JetStreamPublisher(broker), producer="curation").drain()
    finally:
        await db.dispose()


def cycle_status(home: Path, db_url: str, cycle_id: uuid.UUID) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    command = ["cycle", "status", str(cycle_id), "--home", str(home)]
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", *command],
        cwd=ROOT,
        env={**env, "DISTILLERY_DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_an_adapter_for_another_base_ends_the_cycle_on_the_first_delivery(
    nats_server, db_url, tmp_path
):
    store = LocalArtifactStore(tmp_path / "artifacts")
    other_base = hashlib.sha256(b"weights of some other base model").hexdigest()
    adapter = store_adapter(store, tmp_path / "adapter", trained_on=other_base)
    event = store_dataset(store, base_model_ref=adapter, train_rows=4, seed=2).published()
    run_id = run_id_for(event.event_id)

    service = serve_trainer(nats_server.url, db_url, tmp_path)
    try:
        await publish_as_curation(nats_server.url, db_url, event)
        [failed] = await wait_for(
            lambda: events_of(nats_server.url, CycleFailed, event.cycle_id), service
        )
        [letter] = await wait_for(
            lambda: events_of(nats_server.url, DeadLettered, event.cycle_id), service
        )
    finally:
        stop(service)

    assert failed.stage == "training" and failed.causation_id == event.event_id
    assert "base model mismatch" in failed.reason
    assert f"is an adapter trained on base sha256:{other_base[:12]}" in failed.reason
    assert letter.error_kind == "permanent" and letter.deliveries == 1
    assert letter.consumer == CONSUMER and letter.reason == failed.reason
    # Refused in prepare: nothing fetched, no trial, no progress, no answer but the failure.
    assert not (tmp_path / "trainer" / "runs" / str(run_id)).exists()
    assert not (tmp_path / "trainer" / "models" / adapter.sha256).exists()
    assert await events_of(nats_server.url, TrainingProgressed, event.cycle_id) == []
    assert await events_of(nats_server.url, TrainingCompleted, event.cycle_id) == []
    trials = select(func.count()).where(TrainerTrial.run_id == str(run_id))
    assert await count(db_url, trials) == 0
    failed_runs = select(func.count()).where(
        TrainerRun.run_id == str(run_id), TrainerRun.status == "failed"
    )
    assert await count(db_url, failed_runs) == 1
    answers = select(func.count()).where(
        OutboxRow.cycle_id == str(event.cycle_id), OutboxRow.sent_at.is_(None)
    )
    assert await count(db_url, answers) == 0  # relayed by the trainer before it stopped

    status = cycle_status(tmp_path, db_url, event.cycle_id)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.strip().splitlines()
    assert DatasetPublished.subject in lines[1] and "→ trainer" in lines[1]
    answered = "\n".join(lines[2:])
    assert "└─▶ " in answered and CycleFailed.subject in answered
    assert f"dead-lettered by {CONSUMER} (permanent): base model mismatch" in answered
    assert lines[-1] == "3 events · 0 pending · 1 dead-lettered · last stage: cycle.failed"
