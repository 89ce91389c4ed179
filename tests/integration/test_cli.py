"""The `distillery` CLI against real processes: `up` supervising real services on a real
nats-server and SQLite file, and the operator commands reading what they did."""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
from sqlalchemy import select
from typer.testing import CliRunner

from shared.cli.main import app
from shared.db import Database, OutboxRow
from shared.db.migrate import upgrade
from shared.events.catalog import CycleFailed, CycleRequested
from shared.runtime.natsd import NatsServer, free_port
from tests.fixtures import ledger_service
from tests.fixtures.streams import stream_messages

ROOT = Path(__file__).resolve().parents[2]
LEDGER = "tests.fixtures.ledger_service:create_app"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
pytestmark = pytest.mark.slow

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def _keep_logging_config() -> Iterator[None]:
    # The CLI configures structlog for itself; tests that run after this module get theirs back.
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


# --- helpers ---------------------------------------------------------------------------------


def distillery_cmd() -> list[str]:
    script = Path(sys.executable).parent / "distillery"
    return [str(script)] if script.exists() else [sys.executable, "-m", "shared.cli.main"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    return {**env, **extra}


def cli(home: Path, *args: str, **env: str | None):
    """Run a command in process, isolated from the caller's DISTILLERY_* settings."""
    isolated: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DISTILLERY_")}
    return runner.invoke(app, [*args, "--home", str(home)], env={**isolated, **env})


def register(home: Path, *tasks: str, **env: str) -> None:
    """`cycle start` needs a registered task: apply a tiny spec for each name."""
    for task in tasks:
        folder = home.parent / f"{home.name}-spec-{task}"
        folder.mkdir(parents=True, exist_ok=True)
        row = {"id": "g1", "input": "hi", "output": "hello", "use_case": "main", "negative": False}
        (folder / "golden.jsonl").write_text(json.dumps(row) + "\n")
        spec = {
            "name": task,
            "instructions": "Reply politely.",
            "use_cases": [{"name": "main", "weight": 1}],
            "golden_set": "golden.jsonl",
            "teacher": {"base_url": "http://127.0.0.1:8000/v1", "model": "teacher"},
            "student": {"base_model": "tiny"},
            "residency": {"allowed_teacher_hosts": ["127.0.0.1"]},
        }
        (folder / "spec.yaml").write_text(json.dumps(spec))  # JSON is YAML
        result = cli(home, "task", "apply", str(folder / "spec.yaml"), "--no-resolve-models", **env)
        assert result.exit_code == 0, result.output


def sqlite_url(home: Path) -> str:
    return f"sqlite+aiosqlite:///{home / 'distillery.db'}"


def migrate_with_ledger_table(home: Path) -> str:
    home.mkdir(parents=True, exist_ok=True)
    url = sqlite_url(home)
    upgrade(url)

    async def create() -> None:
        db = Database(url)
        async with db.engine.begin() as conn:
            await conn.run_sync(ledger_service.metadata.create_all)
        await db.dispose()

    asyncio.run(create())
    return url


def outbox(url: str, cycle_id: str | None = None) -> list:
    """(event_id, subject, producer, sent_at) rows, oldest first."""

    async def query() -> list:
        db = Database(url)
        try:
            async with db.uow() as uow:
                stmt = select(
                    OutboxRow.event_id, OutboxRow.subject, OutboxRow.producer, OutboxRow.sent_at
                ).order_by(OutboxRow.id)
                if cycle_id:
                    stmt = stmt.where(OutboxRow.cycle_id == cycle_id)
                return list((await uow.session.execute(stmt)).all())
        finally:
            await db.dispose()

    return asyncio.run(query())


def wait_until(check: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def read_runtime(home: Path) -> dict | None:
    try:
        return json.loads((home / "runtime.json").read_text())
    except (OSError, ValueError):
        return None


def service(home: Path, name: str) -> dict:
    return (read_runtime(home) or {}).get("services", {}).get(name, {})


@dataclass
class Up:
    home: Path
    proc: subprocess.Popen
    out: Path
    url: str

    def output(self) -> str:
        return self.out.read_text()


def start_up(home: Path, port: int, seconds: float, **env: str) -> Up:
    out = home.parent / f"{home.name}-up.out"
    with out.open("wb") as log:
        proc = subprocess.Popen(
            [
                *distillery_cmd(),
                *("up", "--home", str(home), "--nats-port", str(port)),
                *("--for-seconds", str(seconds)),
            ],
            cwd=ROOT,
            env=clean_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Up(home, proc, out, sqlite_url(home))


def stop_up(up: Up) -> None:
    if up.proc.poll() is None:
        up.proc.send_signal(signal.SIGTERM)
        try:
            up.proc.wait(30)
        except subprocess.TimeoutExpired:
            up.proc.kill()
            up.proc.wait()


# --- `up` with nothing registered -------------------------------------------------------------


def test_up_with_no_services_runs_the_infrastructure_and_exits_clean(tmp_path):
    home = tmp_path / "bare"
    # Installed services are real ones now; this test is about the infrastructure alone.
    up = start_up(home, free_port(), seconds=3, DISTILLERY_SERVICES="none")
    try:
        runtime = wait_until(lambda: read_runtime(home), "runtime.json", timeout=20)
        assert runtime["services"] == {}
        assert alive(runtime["nats_pid"])
        assert up.proc.wait(30) == 0, up.output()
    finally:
        stop_up(up)
    assert "no services registered or selected" in up.output()
    assert not (home / "runtime.json").exists()
    assert not alive(runtime["nats_pid"])
    assert (home / "artifacts").is_dir()
    assert outbox(sqlite_url(home)) == [], "migrated: the outbox table exists"


# --- `up` with a real service and a broken one ------------------------------------------------


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    home = tmp_path_factory.mktemp("up") / "home"
    migrate_with_ledger_table(home)
    extra = f"ledger={LEDGER},broken=tests.nonexistent:create_app"
    up = start_up(
        home,
        free_port(),
        seconds=120,
        DISTILLERY_EXTRA_SERVICES=extra,
        DISTILLERY_SERVICES="ledger,broken",
    )
    try:
        wait_until(lambda: service(home, "ledger").get("state") == "running", "ledger running")
        register(home, "triage", "followed", "after-restart")
        yield up
    finally:
        stop_up(up)


def test_cycle_start_is_relayed_consumed_and_shown(system: Up):
    result = cli(system.home, "cycle", "start", "triage")
    assert result.exit_code == 0, result.output
    cycle_id = result.stdout.strip()
    assert UUID_RE.match(cycle_id), result.stdout
    assert "relayed to nats://" in result.stderr

    def answered() -> bool:
        rows = outbox(system.url, cycle_id)
        return any(r.subject == CycleFailed.subject and r.sent_at for r in rows) and all(
            r.sent_at for r in rows
        )

    wait_until(answered, "the ledger service's cycle.failed answer, relayed")
    rows = outbox(system.url, cycle_id)
    assert [r.subject for r in rows] == [CycleRequested.subject, CycleFailed.subject]
    assert rows[0].producer == "ops-cli" and rows[1].producer == "ledger"

    tail = cli(system.home, "events", "tail")
    assert tail.exit_code == 0, tail.output
    lines = [ln for ln in tail.stdout.splitlines() if f"cycle={cycle_id[:8]}" in ln]
    assert len(lines) == 2, tail.stdout
    assert CycleRequested.subject in lines[0] and "consumers=ledger" in lines[0]
    assert CycleFailed.subject in lines[1] and "sent" in lines[1]

    filtered = cli(system.home, "events", "tail", "--cycle", cycle_id, "--subject", "cycle.*.v1")
    assert filtered.exit_code == 0 and len(filtered.stdout.splitlines()) == 2, filtered.output
    only_failed = cli(system.home, "events", "tail", "--subject", "distillery.cycle.failed.>")
    assert CycleRequested.subject not in only_failed.stdout

    status = cli(system.home, "cycle", "status", cycle_id)
    assert status.exit_code == 0, status.output
    text = status.stdout
    assert f"cycle {cycle_id}" in text and "task triage" in text
    assert CycleRequested.subject in text and "→ ledger" in text
    assert "└─▶ " in text and CycleFailed.subject in text
    assert text.strip().splitlines()[-1] == (
        "2 events · 0 pending · 0 dead-lettered · last stage: cycle.failed"
    )


def test_events_tail_follow_prints_new_events(system: Up):
    proc = subprocess.Popen(
        [
            *distillery_cmd(),
            "events",
            "tail",
            "--follow",
            "--limit",
            "1",
            "--home",
            str(system.home),
        ],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = ""
    try:
        # Past its first read (the registrations are there to show), so the next event
        # arrives as a new row; a fixed sleep lost that race on a loaded machine.
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=30), "tail printed nothing"
        first = proc.stdout.readline()
        cycle_id = cli(system.home, "cycle", "start", "followed").stdout.strip()
        wait_until(lambda: len(outbox(system.url, cycle_id)) == 2, "the answer")
        time.sleep(1.0)  # two polls
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=15)
        out = first + rest
    assert proc.returncode == 0, out
    followed = [ln for ln in out.splitlines() if f"cycle={cycle_id[:8]}" in ln]
    assert len(followed) == 2, out
    assert CycleRequested.subject in followed[0] and CycleFailed.subject in followed[1]


def test_supervisor_restarts_a_killed_service(system: Up):
    before = service(system.home, "ledger")
    os.kill(before["pid"], signal.SIGKILL)

    def restarted() -> dict | None:
        now = service(system.home, "ledger")
        return now if now.get("state") == "running" and now.get("pid") != before["pid"] else None

    after = wait_until(restarted, "a new ledger pid", timeout=20)
    assert after["restarts"] == before["restarts"] + 1
    assert alive(after["pid"]) and not alive(before["pid"])
    assert "ledger: killed by SIGKILL; restarting in 1s" in system.output()

    # The restarted process consumes again.
    cycle_id = cli(system.home, "cycle", "start", "after-restart").stdout.strip()
    wait_until(lambda: len(outbox(system.url, cycle_id)) == 2, "the restarted ledger's answer")


def test_a_service_that_always_crashes_is_marked_failed_alone(system: Up):
    # Backoff 1+2+4+8 s between five crashes: failed about 16 s after `up` started.
    broken = wait_until(
        lambda: (
            service(system.home, "broken").get("state") == "failed"
            and service(system.home, "broken")
        ),
        "broken marked failed",
        timeout=45,
    )
    assert broken["pid"] is None and broken["restarts"] == 4
    assert "failed: 5 crashes within 60s" in system.output()
    assert "ModuleNotFoundError" in (system.home / "logs" / "broken.log").read_text()
    runtime = read_runtime(system.home)
    assert runtime["services"]["ledger"]["state"] == "running"
    assert alive(runtime["services"]["ledger"]["pid"]) and alive(runtime["nats_pid"])


def test_up_stops_every_process_it_started(system: Up):
    runtime = read_runtime(system.home)
    pids = [runtime["nats_pid"], *(s["pid"] for s in runtime["services"].values() if s["pid"])]
    assert all(alive(p) for p in pids)
    system.proc.send_signal(signal.SIGTERM)
    assert system.proc.wait(30) == 0, system.output()
    assert not (system.home / "runtime.json").exists()
    assert [p for p in pids if alive(p)] == []
    assert system.output().rstrip().endswith("stopped")


# --- the CLI's outbox when NATS is down -------------------------------------------------------


def test_cycle_start_with_nats_down_stays_pending_until_flushed(tmp_path):
    home = tmp_path / "offline"
    url = migrate_with_ledger_table(home)
    port = free_port()
    nats_url = f"nats://127.0.0.1:{port}"
    register(home, "offline-task", DISTILLERY_NATS_URL=nats_url)  # its event waits too

    result = cli(home, "cycle", "start", "offline-task", DISTILLERY_NATS_URL=nats_url)
    assert result.exit_code == 0, result.output
    cycle_id = result.stdout.strip()
    assert UUID_RE.match(cycle_id)
    assert "unreachable" in result.stderr and "outbox flush" in result.stderr
    [row] = outbox(url, cycle_id)
    assert row.sent_at is None and row.producer == "ops-cli"

    still_down = cli(home, "outbox", "flush", DISTILLERY_NATS_URL=nats_url)
    assert still_down.exit_code == 1 and "2 event(s) still pending" in still_down.output

    server = NatsServer(tmp_path / "nats", port=port).start()
    try:
        flushed = cli(home, "outbox", "flush", DISTILLERY_NATS_URL=nats_url)
        assert flushed.exit_code == 0, flushed.output
        assert "relayed 2 event(s)" in flushed.stdout and "0 still pending" in flushed.stdout
        [registered, row] = outbox(url)
        assert row.sent_at is not None and registered.sent_at is not None
        ids = [m.headers["Nats-Msg-Id"] for m in asyncio.run(stream_messages(server.url))]
        assert ids == [registered.event_id, row.event_id]
        again = cli(home, "outbox", "flush", DISTILLERY_NATS_URL=nats_url)
        assert again.exit_code == 0 and "nothing pending" in again.stdout
    finally:
        server.stop()


# --- bad input --------------------------------------------------------------------------------


def test_bad_input_gets_a_clear_error(tmp_path):
    home = tmp_path / "empty"
    missing = cli(home, "cycle", "status", str(uuid.uuid4()))
    assert missing.exit_code == 1 and "no database at" in missing.output

    migrate_with_ledger_table(home)
    unknown = str(uuid.uuid4())
    result = cli(home, "cycle", "status", unknown)
    assert result.exit_code == 1
    assert f"no events for cycle {unknown}" in result.output

    malformed = cli(home, "cycle", "status", "not-a-uuid")
    assert malformed.exit_code == 2 and "'not-a-uuid' is not a valid cycle id" in malformed.output
    bad_filter = cli(home, "events", "tail", "--cycle", "1234")
    assert bad_filter.exit_code == 2 and "'1234' is not a valid cycle id" in bad_filter.output
    bad_reason = cli(home, "cycle", "start", "t", "--reason", "whim")
    assert bad_reason.exit_code == 2 and "whim" in bad_reason.output
    unknown_service = cli(home, "up", "--only", "nosuch")
    assert unknown_service.exit_code == 1 and "unknown service(s): nosuch" in unknown_service.output
    bad_extra = cli(home, "up", DISTILLERY_EXTRA_SERVICES="oops")
    assert bad_extra.exit_code == 1 and "expected name=module:function" in bad_extra.output


def test_database_password_is_never_printed(tmp_path):
    secret_url = "postgresql+asyncpg://ops:hunter2@127.0.0.1:1/nowhere"
    result = cli(tmp_path, "cycle", "status", str(uuid.uuid4()), DISTILLERY_DATABASE_URL=secret_url)
    assert result.exit_code == 1
    assert "hunter2" not in result.output and "ops:***@127.0.0.1:1" in result.output
