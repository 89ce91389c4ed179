"""`distillery up` runs the embedded bus with authorization: each service connects as its own
NATS user with a password made once under HOME/credentials, the CLI as "ops", and a client
without a password is refused. One real service (synth-data) consumes what the CLI publishes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest
from sqlalchemy import select

from shared.bus.consumer import durable_name
from shared.db import Database, InboxRow
from shared.events.catalog import TaskRegistered
from shared.runtime.natsd import free_port

pytestmark = pytest.mark.slow


def run_cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    command = [sys.executable, "-m", "shared.cli.main", *args, "--home", str(home)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def write_spec(folder: Path) -> Path:
    folder.mkdir(parents=True)
    row = {"id": "g1", "input": "hi", "output": "hello", "use_case": "main", "negative": False}
    (folder / "golden.jsonl").write_text(json.dumps(row) + "\n")
    spec = {
        "name": "triage",
        "instructions": "Reply politely.",
        "use_cases": [{"name": "main", "weight": 1}],
        "golden_set": "golden.jsonl",
        "teacher": {"base_url": "http://127.0.0.1:8000/v1", "model": "teacher"},
        "student": {"base_model": "tiny"},
        "residency": {"allowed_teacher_hosts": ["127.0.0.1"]},
    }
    (folder / "spec.yaml").write_text(json.dumps(spec))  # JSON is YAML
    return folder / "spec.yaml"


def applied_by_synth_data(home: Path) -> list[str]:
    async def query() -> list[str]:
        db = Database(f"sqlite+aiosqlite:///{home / 'distillery.db'}")
        try:
            async with db.uow() as uow:
                consumer = durable_name("synth-data", TaskRegistered)
                stmt = select(InboxRow.subject).where(InboxRow.consumer == consumer)
                return list((await uow.session.scalars(stmt)).all())
        finally:
            await db.dispose()

    return asyncio.run(query())


def test_distillery_up_runs_the_bus_with_authorization(tmp_path: Path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLERY_")}
    env["DISTILLERY_SERVICES"] = "synth-data"
    port = free_port()
    args = ["up", "--home", str(home), "--nats-port", str(port), "--for-seconds", "90"]
    up = subprocess.Popen(
        [sys.executable, "-m", "shared.cli.main", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        log = home / "logs" / "synth-data.log"
        deadline = time.monotonic() + 60
        while "service started" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline and up.poll() is None, "synth-data did not start"
            time.sleep(0.2)
        # The CLI is "ops": it may register a task, and synth-data (as itself) consumes it.
        applied = run_cli(
            home, "task", "apply", str(write_spec(tmp_path / "spec")), "--no-resolve-models"
        )
        assert applied.returncode == 0 and "relayed" in applied.stderr, applied.stderr
        while applied_by_synth_data(home) != [TaskRegistered.subject]:
            assert time.monotonic() < deadline + 60, "synth-data never applied task.registered"
            time.sleep(0.2)
        runtime = json.loads((home / "runtime.json").read_text())
        # Nobody without a password gets on the bus.
        with pytest.raises(Exception, match="Authorization Violation"):
            asyncio.run(
                asyncio.wait_for(nats.connect(runtime["nats_url"], allow_reconnect=False), 10)
            )
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
    assert runtime["nats_users"] == ["auditor", "ingest", "ops", "synth-data"]
    for name in runtime["nats_users"]:
        stored = home / "credentials" / f"{name}.json"
        assert stored.stat().st_mode & 0o777 == 0o600
        password = json.loads(stored.read_text())["password"]
        # Plaintext only in its own file: not in the server's config, runtime.json or a log.
        for other in (
            home / "nats" / "auth.conf",
            home / "runtime.json",
            log,
            home / "nats" / "nats-server.log",
        ):
            assert not other.exists() or password not in other.read_text(), other
    assert "Violation" not in (home / "nats" / "nats-server.log").read_text()
