"""A teacher that answers 307 to another host, on a running platform (issue 10, finding 2):
the evaluator and synth-data each as a real process on a nats-server with the catalog's
authorization on, SQLite and PostgreSQL. The allowed teacher (127.0.0.1) redirects every
request to a second server on another loopback address (127.0.0.2) that BOTH allow-lists
name, so only the no-redirect rule stands between the task data and that host. It must get
not one request; the cycle ends at the stage that asked, permanent on the first delivery.
The client-level cases are in test_llm_client.py and test_synth_teacher.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.artifacts import LocalArtifactStore
from shared.db import Database
from shared.events.catalog import (
    CycleFailed,
    CycleRequested,
    DeadLettered,
    EvaluationCompleted,
    SynthCompleted,
)
from shared.tasks import parse_spec
from shared.tasks.registry import register
from tests.fixtures.infra import AuthNats
from tests.fixtures.processes import serve, stop
from tests.fixtures.teacher_server import ScriptedTeacher, running, toy_spec
from tests.integration.test_evaluator_service import (  # noqa: F401 (module fixtures)
    GOLDEN,
    SETTINGS,
    base_dir,
    make_spec,
    make_world,
    trained,
    untrained_adapter_dir,
)
from tests.integration.test_hostile_artifacts import relay_as, relayed
from tests.integration.test_hostile_cycles import relay_as as relay_as_producer

pytestmark = pytest.mark.slow
BOTH = ["127.0.0.1", "127.0.0.2"]  # the spec's list and the operator's: each allows both


@dataclass
class Redirect:
    allowed: ScriptedTeacher  # 127.0.0.1, answers every request with 307 to `other`
    other: ScriptedTeacher  # 127.0.0.2, must never be asked

    @property
    def other_host(self) -> str:
        return f"127.0.0.2:{self.other.port}"


@pytest.fixture
def redirect() -> Iterator[Redirect]:
    with running(host="127.0.0.2") as other, running() as allowed:
        # Every request, however many the service sends at once before the first answer.
        allowed.fail_next(1000, status=307, location=f"{other.url}/chat/completions")
        yield Redirect(allowed, other)


def as_identity(bus: AuthNats, identity: str, tmp: Path, artifacts: Path) -> dict[str, str]:
    return {
        "DISTILLERY_NATS_USER": identity,
        "DISTILLERY_NATS_PASSWORD": bus.credentials[identity].password.get_secret_value(),
        "DISTILLERY_HOME": str(tmp / "home"),
        "DISTILLERY_ARTIFACT_STORE": "local",
        "DISTILLERY_ARTIFACT_ROOT": str(artifacts),
        "DISTILLERY_ALLOWED_TEACHER_HOSTS": ",".join(BOTH),
        # Were the refusal retried, the second delivery would come within seconds.
        "DISTILLERY_MAX_DELIVER": "3",
    }


async def ended(
    db: Database, cycle_id: uuid.UUID, proc: subprocess.Popen, log: Path, redirect: Redirect
):
    """The dead letter and cycle.failed the process committed and relayed for `cycle_id`."""
    deadline = time.monotonic() + 180
    while True:
        assert redirect.other.requests == [], "task data reached the host the redirect named"
        letters = await relayed(db, DeadLettered, {cycle_id})
        failed = await relayed(db, CycleFailed, {cycle_id})
        if letters and failed:
            return letters[cycle_id], failed[cycle_id]
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        await asyncio.sleep(0.5)


def assert_refused(redirect: Redirect, letter, failed, stage: str) -> None:
    assert redirect.other.requests == [], "task data reached the host the redirect named"
    asked = redirect.allowed.requests
    assert asked and all(s.fault is not None and s.fault.status == 307 for s in asked)
    assert (letter.error_kind, letter.deliveries) == ("permanent", 1), letter
    assert "HTTP 307" in letter.reason and redirect.other_host in letter.reason, letter.reason
    assert "redirects are never followed" in letter.reason
    assert failed.stage == stage and failed.reason == letter.reason


async def test_the_evaluator_process_sends_nothing_to_the_redirect_host(
    auth_nats: AuthNats,
    db: Database,
    tmp_path: Path,
    redirect: Redirect,
    base_dir,  # noqa: F811
    untrained_adapter_dir,  # noqa: F811
):
    teacher = SimpleNamespace(base_url=redirect.allowed.url)
    world = make_world(tmp_path, db, teacher, base_dir, untrained=untrained_adapter_dir)
    spec = make_spec(
        world.store, redirect.allowed.url, world.base, residency={"allowed_teacher_hosts": BOTH}
    )
    event = trained(world, "untrained").model_copy(update={"task_spec": spec})
    log = tmp_path / "evaluator.log"
    proc = serve(
        "evaluator.main:create_app",
        auth_nats.url,
        db.url,
        log=log,
        **as_identity(auth_nats, "evaluator", tmp_path, world.store.root),
        EVALUATOR_BATCH_SIZE=str(SETTINGS.batch_size),
        EVALUATOR_MAX_NEW_TOKENS=str(SETTINGS.max_new_tokens),
        EVALUATOR_LATENCY_SAMPLES="1",
        EVALUATOR_PERPLEXITY_MAX_TOKENS="64",
    )
    try:
        await relay_as(auth_nats, db, "trainer", event)
        letter, failed = await ended(db, event.cycle_id, proc, log, redirect)
    finally:
        stop(proc)

    assert_refused(redirect, letter, failed, "evaluation")
    # What the 307 asked to be re-sent: the golden prompts themselves.
    sent = {m["content"] for s in redirect.allowed.requests for m in s.body["messages"]}
    assert sent & {r["input"] for r in GOLDEN}
    assert await relayed(db, EvaluationCompleted, {event.cycle_id}) == {}
    assert "will retry" not in log.read_text()
    assert "Violation" not in auth_nats.server.log_path.read_text()


async def test_synth_data_process_sends_nothing_to_the_redirect_host(
    auth_nats: AuthNats, db: Database, tmp_path: Path, redirect: Redirect
):
    artifacts = tmp_path / "artifacts"
    store = LocalArtifactStore(artifacts)
    spec = parse_spec(
        toy_spec(
            redirect.allowed.url,
            synthesis={"examples": 4},
            residency={"allowed_teacher_hosts": BOTH},
        )
    )
    ref = store.put_bytes(spec.model_dump_json().encode(), media_type="application/json")
    await register(db, spec.name, ref)  # the registry row and task.registered, as apply does
    request = CycleRequested(cycle_id=uuid.uuid4(), task_name=spec.name, producer="ops-cli")
    log = tmp_path / "synth-data.log"
    proc = serve(
        "synth_data.main:create_app",
        auth_nats.url,
        db.url,
        log=log,
        **as_identity(auth_nats, "synth-data", tmp_path, artifacts),
        SYNTH_DATA_BACKOFF_BASE_S="0.05",
    )
    try:
        await relay_as_producer(auth_nats, db, "ops", "ops-cli", request)
        letter, failed = await ended(db, request.cycle_id, proc, log, redirect)
    finally:
        stop(proc)

    assert_refused(redirect, letter, failed, "synth")
    assert await relayed(db, SynthCompleted, {request.cycle_id}) == {}
    assert "will retry" not in log.read_text()
    assert "Violation" not in auth_nats.server.log_path.read_text()
