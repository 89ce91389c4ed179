"""`distillery rollout ...` and `distillery gateway keys ...` on a real migrated SQLite home."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from deployer import repository as repo
from deployer.cli import gateway, rollout
from deployer.keys import digest
from deployer.models import ApiKeyRow
from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.db import Database, OutboxRow
from shared.db.migrate import upgrade
from shared.events import RolloutChanged
from tests.fixtures.teacher_server import toy_spec

runner = CliRunner()


async def _seed(home: Path) -> tuple[str, str]:
    url = f"sqlite+aiosqlite:///{home / 'distillery.db'}"
    await asyncio.to_thread(upgrade, url)
    store = AsyncArtifactStore(LocalArtifactStore(home / "artifacts"))
    spec = await store.put_bytes(json.dumps(toy_spec("http://127.0.0.1:9/v1")).encode())
    deployment_id = str(uuid.uuid4())
    db = Database(url)
    try:
        async with db.uow() as uow:
            repo.add_deployment(
                uow,
                {
                    "deployment_id": deployment_id, "source_event_id": str(uuid.uuid4()),
                    "cycle_id": None, "task_name": "toy-triage", "task_version": 1,
                    "task_spec": spec.model_dump(mode="json"),
                    "candidate": spec.model_dump(mode="json"), "candidate_kind": "llama.cpp",
                    "variant": "gguf-q8_0", "stage": "shadow", "step": 0, "share": 0.0,
                    "paused": False, "reason": "evaluation passed",
                },
            )  # fmt: skip
            await uow.commit()
    finally:
        await db.dispose()
    return url, deployment_id


async def _query(url: str, statement):
    db = Database(url)
    try:
        async with db.uow() as uow:
            return list(await uow.session.scalars(statement))
    finally:
        await db.dispose()


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> tuple[Path, str, str]:
    for name in ("DISTILLERY_DATABASE_URL", "DISTILLERY_ARTIFACT_ROOT", "DISTILLERY_HOME"):
        monkeypatch.delenv(name, raising=False)
    url, deployment_id = asyncio.run(_seed(tmp_path))
    return tmp_path, url, deployment_id


def test_rollout_commands_record_and_announce(home):
    path, url, deployment_id = home
    shown = runner.invoke(rollout, ["status", "--home", str(path)])
    assert shown.exit_code == 0, shown.output
    assert deployment_id in shown.output and "shadow" in shown.output

    paused = runner.invoke(
        rollout, ["pause", deployment_id, "--reason", "incident", "--home", str(path)]
    )
    assert paused.exit_code == 0, paused.output
    assert "shadow, paused" in paused.output
    done = runner.invoke(
        rollout, ["rollback", deployment_id, "--reason", "bad", "--home", str(path)]
    )
    assert done.exit_code == 0 and "rolled_back" in done.output
    again = runner.invoke(rollout, ["promote", deployment_id, "--reason", "x", "--home", str(path)])
    assert again.exit_code == 1 and "cannot be promoted" in again.output

    payloads = asyncio.run(
        _query(url, select(OutboxRow.payload).where(OutboxRow.subject == RolloutChanged.subject))
    )
    stages = [RolloutChanged.model_validate_json(p).stage for p in payloads]
    assert stages == ["shadow", "rolled_back"]


def test_keys_are_printed_once_and_stored_hashed(home):
    path, url, _ = home
    made = runner.invoke(
        gateway, ["keys", "create", "app-1", "--task", "toy-triage", "--home", str(path)]
    )
    assert made.exit_code == 0, made.output
    secret = made.output.strip()
    assert secret.startswith("dk-")
    (key_hash,) = asyncio.run(_query(url, select(ApiKeyRow.key_hash)))
    (tasks,) = asyncio.run(_query(url, select(ApiKeyRow.tasks)))
    assert key_hash == digest(secret) and tasks == ["toy-triage"]
    assert runner.invoke(gateway, ["keys", "create", "x", "--home", str(path)]).exit_code == 1
    again = runner.invoke(
        gateway, ["keys", "create", "app-1", "--task", "toy-triage", "--home", str(path)]
    )
    assert again.exit_code == 1 and "a key named 'app-1' exists" in again.output, again.output
    revoked = runner.invoke(gateway, ["keys", "revoke", "app-1", "--home", str(path)])
    assert revoked.exit_code == 0
    assert runner.invoke(gateway, ["keys", "revoke", "app-1", "--home", str(path)]).exit_code == 1
