"""The loop from its first event, on a real nats-server, every finished service its own process.

`distillery up` runs the embedded runtime (nats-server from the wheel, SQLite, a local artifact
folder) and supervises the services; the operator commands (`task apply`, `cycle start`) are
the real CLI. The teacher is the scripted OpenAI-compatible server of tests/fixtures (a pool
lookup over the demo task pack's synthetic split, NOT a model: see its docstring), because a
tiny random model cannot write valid tickets. Every event is read back from the outbox tables,
which is also what `distillery cycle status` shows.

Each service that lands adds its step to STEPS, so the loop is proven as far as it goes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from shared.db import Database, OutboxRow
from shared.events.catalog import (
    CycleRequested,
    DatasetPublished,
    DeadLettered,
    SynthCompleted,
)
from shared.runtime.natsd import free_port
from tests.fixtures.teacher_server import running

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "tasks" / "ticket-triage"
SERVICES = ["synth-data", "curation"]
# The subjects a cycle must produce, in order, as far as the loop is built.
STEPS = [CycleRequested, SynthCompleted, DatasetPublished]
pytestmark = pytest.mark.slow


def load_pack():
    spec = importlib.util.spec_from_file_location("ticket_triage_generate", PACK / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_pool(n: int = 400) -> list[dict]:
    # The synthetic split shares no sentence with the golden set, so curation keeps it.
    return load_pack().make_examples(n, seed=7, split="synthetic")


def write_spec(dest: Path, teacher_url: str) -> Path:
    """The demo pack's spec, small enough for a CPU test: fewer examples, same task."""
    for name in ("schema.json", "golden.jsonl", "probe.jsonl", "general.txt"):
        shutil.copy(PACK / name, dest / name)
    spec = yaml.safe_load((PACK / "spec.yaml").read_text())
    spec["teacher"]["base_url"] = teacher_url
    spec["teacher"]["model"] = "scripted-teacher"
    spec["synthesis"]["examples"] = 48
    spec["synthesis"]["self_consistency"] = 1
    spec["curation"]["review_share"] = 0.0
    path = dest / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def distillery(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "distillery"), *args, "--home", str(home)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def system(tmp_path: Path) -> Iterator[Path]:
    """`distillery up` with the finished services; yields its home folder."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    env.update(DISTILLERY_SERVICES=",".join(SERVICES), DISTILLERY_ACK_WAIT_S="20")
    out = tmp_path / "up.out"
    with out.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "distillery"),
                *("up", "--home", str(home), "--nats-port", str(free_port())),
                *("--for-seconds", "900"),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not (home / "runtime.json").exists():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, f"`up` did not start:\n{out.read_text()}"
            time.sleep(0.2)
        yield home
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if os.environ.get("E2E_KEEP"):
            print(out.read_text())


def events_of(home: Path, cycle_id: str) -> list[tuple[str, dict]]:
    async def query() -> list[tuple[str, dict]]:
        db = Database(f"sqlite+aiosqlite:///{home / 'distillery.db'}")
        try:
            async with db.uow() as uow:
                rows = await uow.session.execute(
                    select(OutboxRow.subject, OutboxRow.payload)
                    .where(OutboxRow.cycle_id == cycle_id)
                    .order_by(OutboxRow.occurred_at)
                )
                return [(s, json.loads(p)) for s, p in rows.all()]
        finally:
            await db.dispose()

    return asyncio.run(query())


def wait_for(home: Path, cycle_id: str, subject: str, timeout: float) -> list[tuple[str, dict]]:
    deadline = time.monotonic() + timeout
    while True:
        events = events_of(home, cycle_id)
        subjects = [s for s, _ in events]
        if subject in subjects:
            return events
        dead = [p for s, p in events if s == DeadLettered.subject]
        assert not dead, f"dead-lettered while waiting for {subject}: {dead}"
        failed = [p for s, p in events if s.startswith("distillery.cycle.failed")]
        assert not failed, f"cycle failed while waiting for {subject}: {failed}"
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {p.name}\n{p.read_text()[-3000:]}" for p in (home / "logs").glob("*.log")
            )
            raise AssertionError(f"no {subject} after {timeout}s; saw {subjects}\n{logs}")
        time.sleep(0.5)


def test_a_cycle_runs_through_every_finished_service(system: Path, tmp_path: Path):
    with running(synthetic_pool()) as teacher:
        spec_dir = tmp_path / "task"
        spec_dir.mkdir()
        spec = write_spec(spec_dir, teacher.url)
        applied = distillery(system, "task", "apply", str(spec), "--no-resolve-models")
        assert applied.returncode == 0, applied.stderr
        started = distillery(system, "cycle", "start", "ticket-triage")
        assert started.returncode == 0, started.stderr
        cycle_id = started.stdout.strip()

        events: list[tuple[str, dict]] = []
        for step in STEPS:
            events = wait_for(system, cycle_id, step.subject, timeout=240)
        by_subject = {s: p for s, p in events}

        synth = SynthCompleted.model_validate(by_subject[SynthCompleted.subject])
        assert synth.examples > 0 and synth.examples_per_slice
        dataset = DatasetPublished.model_validate(by_subject[DatasetPublished.subject])
        assert dataset.train_examples > 0 and dataset.validation_examples > 0
        assert dataset.task_spec == synth.task_spec
        # One effect per step: redeliveries and restarts never doubled an answer.
        subjects = [s for s, _ in events_of(system, cycle_id)]
        for step in STEPS:
            assert subjects.count(step.subject) == 1, subjects

        status = distillery(system, "cycle", "status", cycle_id)
        assert status.returncode == 0, status.stderr
        assert DatasetPublished.subject in status.stdout
