"""What the end-to-end tests share: `distillery up` with every service, the real CLI, and the
cycle's events read back from the outbox tables (what `cycle status` shows)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from sqlalchemy import select

from shared.cli.demo_task import write_demo_task
from shared.db import Database, OutboxRow
from shared.events.catalog import CycleFailed, DeadLettered
from shared.runtime.natsd import free_port

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "tasks" / "ticket-triage"
SERVICES = [
    "synth-data",
    "curation",
    "trainer",
    "evaluator",
    "quantizer",
    "deployer",
    "gateway",
    "feedback-collector",
]


def write_spec(dest: Path, teacher_url: str, rollout: dict | None = None, **thresholds) -> Path:
    """The demo's task (CPU-sized), with the tiny student, fewer examples, `thresholds` and
    `rollout` settings."""
    path = write_demo_task(PACK, dest, teacher_url)
    spec = yaml.safe_load(path.read_text())
    spec["student"]["base_model"] = "tiny-llama"
    spec["synthesis"]["examples"] = 40
    # Latency and cost depend on how busy the machine is; the gates that end a cycle on them
    # have tests of their own (tests/integration/test_quantizer_service).
    spec["thresholds"].update(p95_latency_ms=3_600_000, max_cost_vs_teacher=None, **thresholds)
    spec["rollout"].update(rollout or {})
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}


def distillery(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "distillery"), *args, "--home", str(home)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def running(tmp_path: Path, **env: str) -> Iterator[Path]:
    """`distillery up` with every service; yields its home folder."""
    home = tmp_path / "home"
    home.mkdir()
    child_env = _env()
    # The gateway on a port of its own: anything on its default 8080 must not fail the test.
    env.setdefault("DEPLOYER_GATEWAY_PORT", str(free_port()))
    child_env.update(DISTILLERY_SERVICES=",".join(SERVICES), DISTILLERY_ACK_WAIT_S="20", **env)
    out = tmp_path / "up.out"
    with out.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "distillery"),
                *("up", "--home", str(home), "--nats-port", str(free_port())),
                *("--for-seconds", "1800"),
            ],
            cwd=ROOT,
            env=child_env,
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


def query(home: Path, statement) -> list:
    async def run() -> list:
        db = Database(f"sqlite+aiosqlite:///{home / 'distillery.db'}")
        try:
            async with db.uow() as uow:
                rows = list((await uow.session.execute(statement)).all())
                uow.session.expunge_all()  # plain values after the unit of work rolls back
                return rows
        finally:
            await db.dispose()

    return asyncio.run(run())


def events_of(home: Path, cycle_id: str) -> list[tuple[str, dict]]:
    rows = query(
        home,
        select(OutboxRow.subject, OutboxRow.payload)
        .where(OutboxRow.cycle_id == cycle_id)
        .order_by(OutboxRow.occurred_at),
    )
    return [(s, json.loads(p)) for s, p in rows]


def in_order(events: list[tuple[str, dict]], expected: list) -> list[dict]:
    """The payloads of the `expected` events, asserting exactly that sequence: every step
    once, no duplicate from any redelivery."""
    wanted = {e.subject for e in expected}
    subjects = [s for s, _ in events if s in wanted]
    assert subjects == [e.subject for e in expected], json.dumps(events, indent=1)[-3000:]
    return [p for s, p in events if s in wanted]


def logs(home: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text()[-3000:]}" for p in (home / "logs").glob("*.log")
    )


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
            raise AssertionError(f"no {subject} after {timeout}s; saw {subjects}\n{logs(home)}")
        time.sleep(0.5)


def start_cycle(home: Path, tiny_model_dir: Path, spec: Path) -> str:
    """Import the tiny student, apply the task, start a cycle: the operator's three commands."""
    imported = distillery(
        home, "models", "import", "--dir", str(tiny_model_dir), "--name", "tiny-llama"
    )
    assert imported.returncode == 0, imported.stderr
    applied = distillery(home, "task", "apply", str(spec))
    assert applied.returncode == 0, applied.stderr
    started = distillery(home, "cycle", "start", "ticket-triage")
    assert started.returncode == 0, started.stderr
    return started.stdout.strip()


def wait_for_rows(home: Path, statement, n: int, timeout: float) -> list:
    """The first column of `statement`'s rows once there are `n` (fewer after `timeout`)."""
    deadline = time.monotonic() + timeout
    while len(rows := [r[0] for r in query(home, statement)]) < n:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return rows
