"""Corrupt artifacts are permanent on the FIRST delivery (issue 10, finding 4): retrying cannot
heal them, and a retry of the trainer or the evaluator costs minutes of CPU.

One event per kind: a training file that is not UTF-8, pickle bytes named `.safetensors`, an
artifact of the wrong size, one whose bytes no longer match its sha256. The trainer runs as a
real process on a nats-server with the catalog's authorization on, fed by the curation
identity; the evaluator through the kernel's consumer policy and its stage, in process (its
fixtures build a model per module; tests/integration/test_evaluator_service.py). Curation's
own cases are in tests/integration/test_curation_gives_up.py.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from shared.artifacts import LocalArtifactStore
from shared.artifacts.base import object_key
from shared.bus import JetStreamPublisher, make_broker
from shared.db import Database, OutboxRow
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleFailed, DatasetPublished, DeadLettered, TrainingCompleted
from shared.models import store_model_dir
from shared.relay import OutboxRelay
from tests.fixtures.datasets import jsonl, store_dataset, triage_rows
from tests.fixtures.infra import AuthNats
from tests.fixtures.processes import serve, stop

# The evaluator's module-scoped fixtures (a tiny base model and an untrained adapter, a scripted
# teacher), registered here by importing them; the tests get them via request.getfixturevalue.
from tests.integration.test_evaluator_service import (  # noqa: F401
    base_dir,
    teacher,
    untrained_adapter_dir,
)

KINDS = ["not utf-8", "pickle named .safetensors", "wrong size", "sha256 mismatch"]


def flip_a_byte(store: LocalArtifactStore, ref: ArtifactRef) -> None:
    """Change the stored bytes after their sha256 was taken (same size: only the digest tells)."""
    path = store.root / object_key(ref.sha256)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def pickled_model(store: LocalArtifactStore, base: ArtifactRef) -> ArtifactRef:
    """The base model's manifest with its weights swapped for pickle bytes under the same name."""
    manifest = json.loads(store.get_bytes(base))
    [name] = [n for n in manifest["files"] if n.endswith(".safetensors")]
    payload = pickle.dumps({"weight": [0.0] * 64})
    manifest["files"][name] = store.put_bytes(payload).model_dump(mode="json")
    return store.put_bytes(json.dumps(manifest).encode(), media_type="application/json")


def corrupt_dataset(store: LocalArtifactStore, base: ArtifactRef, kind: str) -> DatasetPublished:
    if kind == "not utf-8":
        rows = jsonl(triage_rows(4, seed=5)).replace(b"Please help.", b"Caf\xe9 help.")
        return store_dataset(store, base_model_ref=base, train_rows=4, raw_train=rows).published()
    if kind == "pickle named .safetensors":
        pickled = pickled_model(store, base)
        return store_dataset(store, base_model_ref=pickled, train_rows=4, seed=6).published()
    event = store_dataset(store, base_model_ref=base, train_rows=4, seed=7).published()
    if kind == "wrong size":
        wrong = event.train.model_copy(update={"size_bytes": event.train.size_bytes + 7})
        return event.model_copy(update={"train": wrong})
    flip_a_byte(store, event.train)
    return event


async def relay_as(bus: AuthNats, db: Database, identity: str, *events) -> None:
    async with db.uow() as uow:
        await uow.publish(*events)
        await uow.commit()
    creds = bus.credentials[identity]
    async with make_broker(bus.url, client_name=identity, credentials=creds) as broker:
        await broker.connect()
        await OutboxRelay(db, JetStreamPublisher(broker), producer=identity).drain()


async def relayed(db: Database, cls, cycle_ids: set[uuid.UUID]) -> dict[uuid.UUID, object]:
    stmt = select(OutboxRow.payload).where(
        OutboxRow.subject == cls.subject, OutboxRow.sent_at.is_not(None)
    )
    async with db.uow() as uow:
        events = [cls.model_validate_json(p) for p in await uow.session.scalars(stmt)]
    return {e.cycle_id: e for e in events if e.cycle_id in cycle_ids}


@pytest.mark.slow
async def test_the_trainer_ends_each_cycle_on_the_first_delivery(
    auth_nats: AuthNats, db: Database, tmp_path: Path, tiny_model_dir: Path
):
    store = LocalArtifactStore(tmp_path / "artifacts")
    base = store_model_dir(store, tiny_model_dir, "tiny-llama")
    events = {kind: corrupt_dataset(store, base, kind) for kind in KINDS}
    cycles = {e.cycle_id: kind for kind, e in events.items()}
    log = tmp_path / "trainer.log"
    proc = serve(
        "trainer.main:create_app",
        auth_nats.url,
        db.url,
        log=log,
        DISTILLERY_NATS_USER="trainer",
        DISTILLERY_NATS_PASSWORD=auth_nats.credentials["trainer"].password.get_secret_value(),
        DISTILLERY_HOME=str(tmp_path),
        DISTILLERY_ARTIFACT_ROOT=str(store.root),
        # Short backoff: were any of these retried, the test would see it within seconds.
        DISTILLERY_MAX_DELIVER="3",
    )
    try:
        await relay_as(auth_nats, db, "curation", *events.values())
        deadline = time.monotonic() + 180
        while len(letters := await relayed(db, DeadLettered, set(cycles))) < len(cycles):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.5)
        failed = await relayed(db, CycleFailed, set(cycles))
    finally:
        stop(proc)

    expected = {
        "not utf-8": "utf-8",
        "pickle named .safetensors": "not safetensors",
        "wrong size": "bytes), got sha256",
        "sha256 mismatch": "sha256",
    }
    for cycle_id, kind in cycles.items():
        letter = letters[cycle_id]
        assert (letter.error_kind, letter.deliveries) == ("permanent", 1), (kind, letter)
        assert expected[kind] in letter.reason.lower(), (kind, letter.reason)
        assert failed[cycle_id].stage == "training" and failed[cycle_id].reason == letter.reason
    assert "will retry" not in log.read_text()
    assert "Violation" not in auth_nats.server.log_path.read_text()
    assert await relayed(db, TrainingCompleted, set(cycles)) == {}


# --- the evaluator ---------------------------------------------------------------------------

EVAL_KINDS = ["not utf-8", "pickle named .safetensors", "wrong size", "sha256 mismatch"]


def corrupt_training(world, kind: str) -> TrainingCompleted:
    from tests.integration import test_evaluator_service as ev

    event = ev.trained(world, "untrained")
    store, adapter = world.store, event.adapter
    if kind == "not utf-8":  # the golden set, as a Latin-1 editor would have saved it
        golden = store.put_bytes(ev._jsonl(ev.GOLDEN).replace(b"\n", "café\n".encode("latin-1")))
        spec = ev.make_spec(store, "http://127.0.0.1:9/v1", world.base, golden_set=golden)
        return event.model_copy(update={"task_spec": spec})
    if kind == "pickle named .safetensors":
        return event.model_copy(update={"adapter": pickled_model(store, adapter)})
    if kind == "wrong size":
        wrong = adapter.model_copy(update={"size_bytes": adapter.size_bytes + 7})
        return event.model_copy(update={"adapter": wrong})
    spec = json.loads(store.get_bytes(event.task_spec))
    flip_a_byte(store, ArtifactRef.model_validate(spec["golden_set"]))
    return event


@pytest.mark.parametrize("kind", EVAL_KINDS)
async def test_the_evaluator_ends_the_cycle_on_the_first_delivery(
    kind: str, sqlite_db: Database, tmp_path: Path, request: pytest.FixtureRequest
):
    from tests.integration import test_evaluator_service as ev

    scripted = request.getfixturevalue("teacher")
    world = ev.make_world(
        tmp_path,
        sqlite_db,
        scripted,
        request.getfixturevalue("base_dir"),
        untrained=request.getfixturevalue("untrained_adapter_dir"),
    )
    event = corrupt_training(world, kind)
    asked = len(scripted.requests)

    assert await ev.deliver(world, event, delivery=1) == "dead_lettered_permanent"

    out = await ev.answers(sqlite_db, event)
    [letter] = out.pop(DeadLettered.subject)
    [failed] = out.pop(CycleFailed.subject)
    assert out == {}, "no evaluation.completed, no iteration"
    assert letter.deliveries == 1 and letter.error_kind == "permanent"
    assert failed.stage == "evaluation" and failed.reason == letter.reason
    expected = {"not utf-8": "utf-8", "pickle named .safetensors": "not safetensors"}
    expected |= {"wrong size": "bytes), got sha256", "sha256 mismatch": "expected sha256"}
    assert expected[kind] in letter.reason.lower(), letter.reason
    assert len(scripted.requests) == asked, "refused before the teacher or any model ran"
