"""Applying task specs against real databases (SQLite and PostgreSQL) and real artifact stores
(local folder and an S3-protocol server), through the registry and through the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
import structlog
import yaml
from sqlalchemy import func, select
from typer.testing import CliRunner

from shared.artifacts import AsyncArtifactStore, LocalArtifactStore, S3ArtifactStore
from shared.cli.main import app
from shared.db import Database, OutboxRow
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleRequested, TaskRegistered
from shared.runtime.natsd import free_port
from shared.tasks import TaskSpecError, spec_from_json
from shared.tasks.registry import (
    apply_spec,
    latest_spec,
    list_specs,
    register_base_model,
    resolve_base_model,
)
from shared.tasks.tables import TaskSpecRow
from tests.fixtures.s3 import S3_ACCESS_KEY, S3_SECRET_KEY

PACK = Path(__file__).resolve().parents[2] / "tasks" / "ticket-triage"
runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def _keep_logging_config():
    saved = structlog.get_config()  # the CLI configures structlog for itself
    yield
    structlog.configure(**saved)


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    """A private copy of the demo pack, free to edit."""
    return Path(shutil.copytree(PACK, tmp_path / "ticket-triage")) / "spec.yaml"


@pytest.fixture
def store(tmp_path: Path) -> AsyncArtifactStore:
    return AsyncArtifactStore(LocalArtifactStore(tmp_path / "artifacts"))


def edit(spec_path: Path, **changes: object) -> None:
    data = yaml.safe_load(spec_path.read_text())
    data.update(changes)
    spec_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


async def registered_events(db: Database) -> list[TaskRegistered]:
    async with db.uow() as uow:
        stmt = select(OutboxRow.payload).where(OutboxRow.subject == TaskRegistered.subject)
        payloads = (await uow.session.execute(stmt.order_by(OutboxRow.id))).scalars()
        return [TaskRegistered.model_validate_json(p) for p in payloads]


async def spec_rows(db: Database) -> int:
    async with db.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(TaskSpecRow)))


# --- the registry -----------------------------------------------------------------------------


async def test_apply_is_idempotent_and_a_change_is_a_new_version(db, store, pack):
    first = await apply_spec(db, store, pack, resolve_models=False)
    assert (first.name, first.version, first.created) == ("ticket-triage", 1, True)
    assert first.golden_rows == 240

    again = await apply_spec(db, store, pack, resolve_models=False)
    assert (again.version, again.created, again.spec_ref) == (1, False, first.spec_ref)
    assert len(await registered_events(db)) == 1, "an unchanged spec publishes nothing"

    edit(pack, description="Now with a longer description.")
    second = await apply_spec(db, store, pack, resolve_models=False)
    assert (second.version, second.created) == (2, True)
    assert second.spec_ref.sha256 != first.spec_ref.sha256

    events = await registered_events(db)
    assert [(e.task_name, e.task_version, e.spec) for e in events] == [
        ("ticket-triage", 1, first.spec_ref),
        ("ticket-triage", 2, second.spec_ref),
    ]
    assert all(e.producer == "ops-cli" and e.cycle_id is None for e in events)

    latest = await latest_spec(db, "ticket-triage")
    assert (latest.version, latest.ref()) == (2, second.spec_ref)
    assert (await latest_spec(db, "ticket-triage", version=1)).ref() == first.spec_ref
    assert await latest_spec(db, "ticket-triage", version=3) is None
    assert await latest_spec(db, "nope") is None
    assert [(r.name, r.version) for r in await list_specs(db)] == [("ticket-triage", 2)]
    everything = await list_specs(db, all_versions=True)
    assert [r.version for r in everything] == [1, 2]


async def test_concurrent_applies_of_one_spec_register_it_once(db, store, pack):
    results = await asyncio.gather(
        *(apply_spec(db, store, pack, resolve_models=False) for _ in range(3))
    )
    assert sorted(r.created for r in results) == [False, False, True]
    assert {r.version for r in results} == {1}
    assert len(await registered_events(db)) == 1 and await spec_rows(db) == 1


async def test_bad_input_writes_nothing(db, store, pack):
    golden = pack.parent / "golden.jsonl"
    lines = golden.read_text().splitlines()
    row = json.loads(lines[4])
    row["output"] = json.dumps({**json.loads(row["output"]), "priority": "asap"})
    lines[4] = json.dumps(row)
    golden.write_text("\n".join(lines) + "\n")

    with pytest.raises(TaskSpecError) as info:
        await apply_spec(db, store, pack, resolve_models=False)
    [problem] = info.value.problems
    assert problem.startswith("golden_set: golden.jsonl:5: output.priority: 'asap' is not one of")
    assert await spec_rows(db) == 0 and await registered_events(db) == []


async def test_stored_spec_is_self_contained(db, pack, request, tmp_path):
    for kind in ("local", "s3"):
        if kind == "local":
            sync = LocalArtifactStore(tmp_path / "local-store")
        else:
            endpoint = request.getfixturevalue("s3_endpoint")
            bucket = f"t-{os.urandom(4).hex()}"
            sync = S3ArtifactStore(endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, bucket)
        store = AsyncArtifactStore(sync)
        applied = await apply_spec(db, store, pack, resolve_models=False)
        assert applied.spec_ref.media_type == "application/json"

        stored = spec_from_json(await store.get_bytes(applied.spec_ref))
        assert stored == applied.spec
        assert stored.output_schema == json.loads((PACK / "schema.json").read_text())
        assert stored.student.base_model_ref is None
        for field, name in (
            ("golden_set", "golden.jsonl"),
            ("probe_set", "probe.jsonl"),
            ("general_text", "general.txt"),
        ):
            ref = stored.ref(field)
            assert await store.get_bytes(ref) == (PACK / name).read_bytes(), field
    # Two stores, two URIs: the same spec content in another store is another version.
    assert [r.version for r in await list_specs(db, all_versions=True)] == [1, 2]


async def test_student_base_model_is_resolved_to_the_latest_import(db, store, pack):
    with pytest.raises(TaskSpecError) as info:
        await apply_spec(db, store, pack)
    assert info.value.problems == [
        "student.base_model: no imported model named 'smollm2-135m-instruct'; run "
        "`distillery models import` first (or apply with --no-resolve-models)"
    ]
    assert await spec_rows(db) == 0

    old = await store.put_bytes(b'{"format": "distillery.model.v1", "v": 1}')
    new = await store.put_bytes(b'{"format": "distillery.model.v1", "v": 2}')
    assert await register_base_model(db, "smollm2-135m-instruct", old, "gguf v1")
    assert await register_base_model(db, "smollm2-135m-instruct", new, "gguf v2")
    assert not await register_base_model(db, "smollm2-135m-instruct", new, "again")

    applied = await apply_spec(db, store, pack)
    assert applied.spec.student.base_model_ref == new
    assert (await resolve_base_model(db, "smollm2-135m-instruct")).source == "gguf v2"
    assert (await resolve_base_model(db, f"sha256:{old.sha256}")).ref() == old
    assert await resolve_base_model(db, "sha256:" + "0" * 64) is None

    edit(pack, student={"base_model": f"sha256:{old.sha256}", "max_seq_len": 1024})
    pinned = await apply_spec(db, store, pack)
    assert (pinned.version, pinned.spec.student.base_model_ref) == (2, old)


# --- the CLI ----------------------------------------------------------------------------------


def cli(home: Path, *args: str):
    env = {k: None for k in os.environ if k.startswith("DISTILLERY_")}
    # A port nothing listens on: relays must fail fast, never reach another test's server.
    env["DISTILLERY_NATS_URL"] = f"nats://127.0.0.1:{free_port()}"
    return runner.invoke(app, [*args, "--home", str(home)], env=env)


def outbox_subjects(home: Path) -> list[tuple[str, dict]]:
    async def query():
        db = Database(f"sqlite+aiosqlite:///{home / 'distillery.db'}")
        try:
            async with db.uow() as uow:
                stmt = select(OutboxRow.subject, OutboxRow.payload).order_by(OutboxRow.id)
                return [(s, json.loads(p)) for s, p in (await uow.session.execute(stmt)).all()]
        finally:
            await db.dispose()

    return asyncio.run(query())


def test_cli_apply_list_show_and_cycle_start(tmp_path, pack):
    home = tmp_path / "home"
    applied = cli(home, "task", "apply", str(pack), "--no-resolve-models")
    assert applied.exit_code == 0, applied.output
    lines = applied.stdout.splitlines()
    assert lines[0] == "ticket-triage version 1 created"
    assert lines[2].startswith("  golden set  240 rows, sha256:")
    assert lines[-1] == "  base model  smollm2-135m-instruct -> not resolved (--no-resolve-models)"
    assert "created and migrated the database" in applied.stderr
    assert "NATS is unreachable" in applied.stderr and "outbox flush" in applied.stderr

    unchanged = cli(home, "task", "apply", str(pack.parent), "--no-resolve-models")  # its folder
    assert unchanged.exit_code == 0, unchanged.output
    assert unchanged.stdout.splitlines()[0] == (
        "ticket-triage version 1 unchanged (same spec as the latest version)"
    )
    assert lines[1] == unchanged.stdout.splitlines()[1], "same spec sha256"

    listed = cli(home, "task", "list")
    assert listed.exit_code == 0, listed.output
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "VERSION", "APPLIED", "(UTC)", "SPEC"]
    assert row.split()[:2] == ["ticket-triage", "1"]
    assert lines[1].split(":")[1].startswith(row.split("sha256:")[1])

    shown = cli(home, "task", "show", "ticket-triage")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith("# ticket-triage version 1, applied ")
    data = yaml.safe_load(shown.stdout)
    assert data["name"] == "ticket-triage" and data["quantization"] == ["int8", "gguf"]
    assert ArtifactRef.model_validate(data["golden_set"]).media_type == "application/jsonl"
    missing = cli(home, "task", "show", "ticket-triage", "--version", "7")
    assert missing.exit_code == 1 and "no version 7 of task 'ticket-triage'" in missing.output

    started = cli(home, "cycle", "start", "ticket-triage")
    assert started.exit_code == 0, started.output
    subjects = outbox_subjects(home)
    assert [s for s, _ in subjects] == [TaskRegistered.subject, CycleRequested.subject]
    request = CycleRequested.model_validate(subjects[1][1])
    assert str(request.cycle_id) == started.stdout.strip()
    assert request.task_version == 1
    assert request.task_spec == TaskRegistered.model_validate(subjects[0][1]).spec


def test_cli_refuses_a_bad_spec_with_every_problem_and_no_traceback(tmp_path, pack):
    home = tmp_path / "home"
    edit(pack, quantization=["int9"], training={"trials": "many"})
    result = cli(home, "task", "apply", str(pack), "--no-resolve-models")
    assert result.exit_code == 2
    assert "Traceback" not in result.output and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {pack}: invalid task spec",
        "  quantization.0: Input should be 'int8', 'int4', 'fp8' or 'gguf'",
        "  training.trials: Input should be a valid integer, unable to parse string as an integer",
    ]
    assert not home.exists(), "a bad spec leaves no database behind"

    # Cross-field rules run once every field is valid on its own.
    edit(pack, quantization=["int8"], training={"trials": 2})
    edit(pack, teacher={"base_url": "https://api.example.com/v1", "model": "x"})
    outside = cli(home, "task", "apply", str(pack), "--no-resolve-models")
    assert outside.exit_code == 2
    assert outside.stderr.splitlines()[1:] == [
        "  teacher.base_url: host 'api.example.com' is outside residency.allowed_teacher_hosts "
        "['127.0.0.1', 'localhost']"
    ]

    edit(pack, teacher={"base_url": "http://localhost:8000/v1", "model": "x"})
    (pack.parent / "golden.jsonl").unlink()
    files = cli(home, "task", "apply", str(pack), "--no-resolve-models")
    assert files.exit_code == 2 and "Traceback" not in files.output
    assert files.stderr.splitlines()[-1].startswith("  golden_set: file golden.jsonl not found")


def test_cycle_start_for_an_unregistered_task_is_a_usage_error(tmp_path, pack):
    home = tmp_path / "home"
    assert cli(home, "task", "apply", str(pack), "--no-resolve-models").exit_code == 0
    result = cli(home, "cycle", "start", "no-such-task")
    assert result.exit_code == 2
    assert "task 'no-such-task' is not registered" in result.stderr
    assert "distillery task apply" in result.stderr
    assert [s for s, _ in outbox_subjects(home)] == [TaskRegistered.subject]
    wrong_version = cli(home, "cycle", "start", "ticket-triage", "--version", "2")
    assert wrong_version.exit_code == 2 and "has no version 2" in wrong_version.stderr
