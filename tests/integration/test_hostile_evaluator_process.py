"""Corrupt artifacts behind a training.completed, sent to the evaluator as a real process on a
nats-server with the catalog's authorization on, by the one identity that may publish that
subject (the trainer's), SQLite and PostgreSQL (issue 10, finding 4). The in-process cases are
in test_hostile_artifacts.py; this is the same four kinds through the process's own consumer,
settings and error policy: each is permanent on the FIRST delivery, ends its cycle, and
neither the teacher nor a model ran for it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from shared.db import Database
from shared.events.catalog import (
    CycleFailed,
    DeadLettered,
    EvaluationCompleted,
    TrainingCompleted,
)
from tests.fixtures.infra import AuthNats
from tests.fixtures.processes import serve, stop
from tests.integration.test_evaluator_service import (  # noqa: F401 (module fixtures)
    SETTINGS,
    base_dir,
    make_world,
    teacher,
    untrained_adapter_dir,
)
from tests.integration.test_hostile_artifacts import (
    EVAL_KINDS,
    corrupt_training,
    flip_a_byte,
    relay_as,
    relayed,
)

EXPECTED = {
    "not utf-8": "utf-8",
    "pickle named .safetensors": "not safetensors",
    "wrong size": "bytes), got sha256",
    "sha256 mismatch": "expected sha256",
}


def corrupted(world, kind: str) -> TrainingCompleted:
    """As in process, but all four share one store here: the flipped golden set must be one
    of this event's own, or the other three would fail on it first."""
    from tests.integration import test_evaluator_service as ev

    if kind != "sha256 mismatch":
        return corrupt_training(world, kind)
    golden = world.store.put_bytes(ev._jsonl(list(reversed(ev.GOLDEN))))
    spec = ev.make_spec(world.store, "http://127.0.0.1:9/v1", world.base, golden_set=golden)
    flip_a_byte(world.store, golden)
    event = ev.trained(world, "untrained")
    return event.model_copy(update={"task_spec": spec})


@pytest.mark.slow
async def test_the_evaluator_process_ends_each_cycle_on_the_first_delivery(
    auth_nats: AuthNats,
    db: Database,
    tmp_path: Path,
    teacher,  # noqa: F811
    base_dir,  # noqa: F811
    untrained_adapter_dir,  # noqa: F811
):
    world = make_world(tmp_path, db, teacher, base_dir, untrained=untrained_adapter_dir)
    events = {kind: corrupted(world, kind) for kind in EVAL_KINDS}
    cycles = {e.cycle_id: kind for kind, e in events.items()}
    asked = len(teacher.requests)
    log = tmp_path / "evaluator.log"
    proc = serve(
        "evaluator.main:create_app",
        auth_nats.url,
        db.url,
        log=log,
        DISTILLERY_NATS_USER="evaluator",
        DISTILLERY_NATS_PASSWORD=auth_nats.credentials["evaluator"].password.get_secret_value(),
        DISTILLERY_HOME=str(tmp_path / "home"),
        DISTILLERY_ARTIFACT_ROOT=str(world.store.root),
        # Were any of these retried, the second delivery would come within seconds.
        DISTILLERY_MAX_DELIVER="3",
        EVALUATOR_BATCH_SIZE=str(SETTINGS.batch_size),
        EVALUATOR_MAX_NEW_TOKENS=str(SETTINGS.max_new_tokens),
        EVALUATOR_LATENCY_SAMPLES="1",
        EVALUATOR_PERPLEXITY_MAX_TOKENS="64",
    )
    try:
        await relay_as(auth_nats, db, "trainer", *events.values())
        deadline = time.monotonic() + 180
        while True:
            letters = await relayed(db, DeadLettered, set(cycles))
            failed = await relayed(db, CycleFailed, set(cycles))
            if len(letters) == len(failed) == len(cycles):
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.5)
    finally:
        stop(proc)

    for cycle_id, kind in cycles.items():
        letter = letters[cycle_id]
        assert (letter.error_kind, letter.deliveries) == ("permanent", 1), (kind, letter)
        assert EXPECTED[kind] in letter.reason.lower(), (kind, letter.reason)
        assert failed[cycle_id].stage == "evaluation" and failed[cycle_id].reason == letter.reason
    assert await relayed(db, EvaluationCompleted, set(cycles)) == {}
    assert len(teacher.requests) == asked, "refused before the teacher or any model ran"
    assert "will retry" not in log.read_text()
    assert "Violation" not in auth_nats.server.log_path.read_text()
