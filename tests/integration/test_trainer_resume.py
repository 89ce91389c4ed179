"""A worker SIGKILLed mid-training resumes from its last checkpoint, even on a machine that
never saw the run (the checkpoint comes back from the artifact store), and finishes once.

The trainer's stage runs through the stage template's handler, as the bus runs it; the
message is a fake of the policy's port, the database, worker and store are real."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time

import psutil
import pytest
from sqlalchemy import func, select

from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.bus import Delivery, TransientError
from shared.db import OutboxRow
from shared.events import ConsumerPolicy
from shared.events.catalog import DatasetPublished, TrainingCompleted, TrainingProgressed
from shared.models import store_model_dir
from shared.runtime.stage import handler_for
from tests.fixtures.datasets import store_dataset
from tests.unit.test_consumer_policy import FakeMessage
from trainer.domain import run_id_for
from trainer.models import TrainerRun, TrainerTrial
from trainer.service import Deps, run_dir, stages
from trainer.settings import NAME, TrainerSettings

CONSUMER = "trainer--dataset-published-v1"
POLICY = ConsumerPolicy()
TRAINING = {
    "trials": 1,
    "batch_size": 4,
    "search": {
        "rank": [8],
        "alpha": [16],
        "learning_rate": {"low": 5e-3, "high": 5e-3},
        "epochs": [2],
    },
}


async def scalar(db, stmt):
    async with db.uow() as uow:
        return await uow.session.scalar(stmt)


def delivery(event: DatasetPublished, number: int) -> Delivery:
    body = event.model_dump_json().encode()
    return Delivery(FakeMessage(body, delivery=number, subject=event.subject), CONSUMER, POLICY)


def kill_workers() -> int:
    killed = 0
    for child in psutil.Process().children(recursive=True):
        if "shared.runtime.worker" in " ".join(child.cmdline()):
            os.kill(child.pid, signal.SIGKILL)
            killed += 1
    return killed


async def test_sigkilled_worker_resumes_from_the_stored_checkpoint(
    sqlite_db, tmp_path, tiny_model_dir
):
    store = LocalArtifactStore(tmp_path / "artifacts")
    base = store_model_dir(store, tiny_model_dir, "tiny-llama")
    dataset = store_dataset(store, base_model_ref=base, training=TRAINING)
    event = dataset.published()
    run_id = run_id_for(event.event_id)
    settings = TrainerSettings(checkpoint_steps=2, progress_interval_s=0, evaluations_per_trial=2)
    deps = Deps(sqlite_db, AsyncArtifactStore(store), settings, tmp_path / "work")
    [stage] = stages(deps)
    handle = handler_for(stage, service=NAME, db=sqlite_db)

    first = asyncio.create_task(handle(event, delivery(event, 1)))
    checkpoint = select(TrainerTrial.checkpoint_step).where(TrainerTrial.run_id == str(run_id))
    deadline = time.monotonic() + 240
    while (await scalar(sqlite_db, checkpoint) or 0) < 4:
        assert not first.done(), first
        assert time.monotonic() < deadline, "no checkpoint at step 4 in time"
        await asyncio.sleep(0.1)
    assert kill_workers() == 1
    with pytest.raises(TransientError, match="before answering"):
        await first
    progressed = select(func.count()).where(OutboxRow.subject == TrainingProgressed.subject)
    steps_before_kill = await scalar(sqlite_db, progressed)
    assert await scalar(sqlite_db, select(func.count()).select_from(TrainerRun)) == 0

    # Another machine: nothing of the run on local disk, only the database and the store.
    shutil.rmtree(run_dir(deps, run_id))
    await handle(event, delivery(event, 2))

    completed = await scalar(
        sqlite_db, select(OutboxRow.payload).where(OutboxRow.subject == TrainingCompleted.subject)
    )
    answer = TrainingCompleted.model_validate_json(completed)
    report = json.loads(store.get_bytes(answer.report))
    trial = report["trials"][0]
    total = trial["total_steps"]
    assert total == 12
    assert trial["resumed_from_step"] >= 4, "the resumed run started from the checkpoint"
    executed = steps_before_kill + (total - trial["resumed_from_step"])
    assert executed < 2 * total, "resuming must not redo the whole run"
    # Every step reported exactly once: re-reported steps share their event id.
    assert await scalar(sqlite_db, progressed) == total
    assert [s for s, _ in trial["train_losses"]] == list(range(1, total + 1))
    assert answer.run_id == run_id and answer.base_model == base
    assert await scalar(sqlite_db, select(TrainerRun.status)) == "completed"
