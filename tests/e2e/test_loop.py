"""The loop from its first event, on a real nats-server, every finished service its own process.

`distillery up` runs the embedded runtime (nats-server from the wheel, SQLite, a local artifact
folder) and supervises the services; the operator commands (`models import`, `task apply`,
`cycle start`) are the real CLI. The teacher is the demo's stand-in teacher
(tasks/ticket-triage/teacher.py: scripted answers from the task pack, NOT a model), because a
tiny random model can neither write valid tickets nor label them. The student is a tiny
random-weight llama, so it fails its gates: the evaluator asks for an iteration focused on the
failing slices, the loop runs again, and at the spec's maximum the cycle fails with the reason.
Every event is read back from the outbox tables, which is also what `cycle status` shows.

Each service that lands adds its step to the expected sequence, so the loop is proven as far
as it goes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from shared.cli.demo import start_teacher, write_demo_task
from shared.db import Database, OutboxRow
from shared.events.catalog import (
    CycleFailed,
    CycleIterationRequested,
    CycleRequested,
    DatasetPublished,
    DeadLettered,
    EvaluationCompleted,
    SynthCompleted,
    TrainingCompleted,
)
from shared.runtime.natsd import free_port

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "tasks" / "ticket-triage"
SERVICES = ["synth-data", "curation", "trainer", "evaluator"]
ONE_PASS = [SynthCompleted, DatasetPublished, TrainingCompleted, EvaluationCompleted]
# max_iterations 2: pass 1 fails its gates → an iteration → pass 2 fails → the cycle fails.
EXPECTED = [CycleRequested, *ONE_PASS, CycleIterationRequested, *ONE_PASS, CycleFailed]
pytestmark = pytest.mark.slow


def write_spec(dest: Path, teacher_url: str) -> Path:
    """The demo's task (CPU-sized), with the tiny student and an even smaller batch."""
    path = write_demo_task(PACK, dest, teacher_url)
    spec = yaml.safe_load(path.read_text())
    spec["student"]["base_model"] = "tiny-llama"
    spec["synthesis"]["examples"] = 40
    # The demo stops after one pass; the loop test needs the iteration path too.
    spec["thresholds"]["max_iterations"] = 2
    # A random tiny student must fail on quality alone, so the loop iterates: its speed and
    # cost depend on how busy the machine is (the latency and cost gates, which end a cycle
    # without iterating, have tests of their own in tests/integration/test_evaluator_service).
    spec["thresholds"]["p95_latency_ms"] = 3_600_000
    spec["thresholds"]["max_cost_vs_teacher"] = None
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
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
                *("--for-seconds", "1800"),
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


def wait_for(
    home: Path, cycle_id: str, subject: str, timeout: float, failing_ok: bool = False
) -> list[tuple[str, dict]]:
    deadline = time.monotonic() + timeout
    while True:
        events = events_of(home, cycle_id)
        subjects = [s for s, _ in events]
        if subject in subjects:
            return events
        dead = [p for s, p in events if s == DeadLettered.subject]
        assert not dead, f"dead-lettered while waiting for {subject}: {dead}"
        failed = [p for s, p in events if s == CycleFailed.subject]
        assert failing_ok or not failed, f"cycle failed while waiting for {subject}: {failed}"
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {p.name}\n{p.read_text()[-3000:]}" for p in (home / "logs").glob("*.log")
            )
            raise AssertionError(f"no {subject} after {timeout}s; saw {subjects}\n{logs}")
        time.sleep(0.5)


def test_a_cycle_runs_the_whole_loop_and_iterates(
    system: Path, tmp_path: Path, tiny_model_dir: Path
):
    teacher, teacher_url = start_teacher(PACK, tmp_path / "teacher.log")
    try:
        imported = distillery(
            system, "models", "import", "--dir", str(tiny_model_dir), "--name", "tiny-llama"
        )
        assert imported.returncode == 0, imported.stderr
        spec = write_spec(tmp_path / "task", teacher_url)
        applied = distillery(system, "task", "apply", str(spec))
        assert applied.returncode == 0, applied.stderr
        started = distillery(system, "cycle", "start", "ticket-triage")
        assert started.returncode == 0, started.stderr
        cycle_id = started.stdout.strip()
        # Generous: two training runs and four model evaluations on 2 shared cores.
        events = wait_for(system, cycle_id, CycleFailed.subject, timeout=1500, failing_ok=True)
    finally:
        teacher.terminate()
        teacher.wait(10)

    subjects = [s for s, _ in events if s in {e.subject for e in EXPECTED}]
    # Exactly this sequence: every step once per pass, no duplicate from any redelivery.
    assert subjects == [e.subject for e in EXPECTED], json.dumps(events, indent=1)[-3000:]
    payloads = [p for s, p in events if s in {e.subject for e in EXPECTED}]
    synth = SynthCompleted.model_validate(payloads[1])
    assert synth.examples > 0 and synth.iteration == 1
    dataset = DatasetPublished.model_validate(payloads[2])
    assert dataset.train_examples > 0 and dataset.validation_examples > 0
    trained = TrainingCompleted.model_validate(payloads[3])
    assert trained.dataset_version == dataset.dataset_version
    verdict = EvaluationCompleted.model_validate(payloads[4])
    assert not verdict.passed and verdict.failing_slices
    iteration = CycleIterationRequested.model_validate(payloads[5])
    assert iteration.iteration == 2 and iteration.failing_slices == verdict.failing_slices
    focused = SynthCompleted.model_validate(payloads[6])
    assert focused.iteration == 2
    assert set(focused.examples_per_slice) <= set(verdict.failing_slices)
    second = DatasetPublished.model_validate(payloads[7])
    assert second.train_examples > dataset.train_examples, "iteration 2 adds to the data"
    failed = CycleFailed.model_validate(payloads[-1])
    assert failed.stage == "evaluation"

    status = distillery(system, "cycle", "status", cycle_id)
    assert status.returncode == 0, status.stderr
    assert CycleFailed.subject in status.stdout
