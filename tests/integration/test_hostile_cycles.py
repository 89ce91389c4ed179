"""Hostile cycle events (issue 10, "state checks"): an event about a cycle the platform never
started, and task registrations that the registry never made.

In process first (the stage under the real error policy, SQLite and PostgreSQL), then on a
running platform: synth-data as a process on a nats-server with the catalog's authorization
on, the forged iteration sent by the one identity allowed to publish that subject (the
evaluator's), next to a valid cycle that must still complete.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.bus import JetStreamPublisher, make_broker
from shared.db import Database, OutboxRow
from shared.events import Event
from shared.events.catalog import (
    CycleFailed,
    CycleIterationRequested,
    CycleRequested,
    DeadLettered,
    SynthCompleted,
    TaskRegistered,
)
from shared.relay import OutboxRelay
from shared.tasks import parse_spec
from shared.tasks.registry import register
from synth_data.repository import get_run
from tests.fixtures.infra import AuthNats
from tests.fixtures.processes import serve, stop
from tests.fixtures.teacher_server import ScriptedTeacher, running, toy_spec
from tests.integration.test_synth_service import (
    completed_run,
    deliver,
    deps,
    put_spec,
    staged,
)


@pytest.fixture
def teacher() -> Iterator[ScriptedTeacher]:
    with running() as scripted:
        yield scripted


@pytest.fixture
def store(tmp_path: Path) -> AsyncArtifactStore:
    return AsyncArtifactStore(LocalArtifactStore(tmp_path / "artifacts"))


def iteration(ref, cycle_id: uuid.UUID, n: int = 2, version: int = 1) -> CycleIterationRequested:
    return CycleIterationRequested(
        cycle_id=cycle_id,
        task_name="toy-triage",
        task_version=version,
        task_spec=ref,
        iteration=n,
        failing_slices=["outage"],
        evaluation_report=ref,
        producer="evaluator",
    )


async def test_an_iteration_of_a_cycle_never_started_is_refused_and_touches_nothing(
    db, store, teacher
):
    ref = await put_spec(db, store, toy_spec(teacher.url))
    forged = iteration(ref, uuid.uuid4())  # a made-up cycle id, a real registered spec

    assert await deliver(deps(db, store), forged) == "dead_lettered_permanent"

    [letter] = await staged(db, DeadLettered)
    assert letter.cycle_id == forged.cycle_id and letter.error_kind == "permanent"
    assert "never ran iteration 1 of that cycle; refused" in letter.reason
    # Nothing of a cycle: no request to the teacher, no run row, no answer, no cycle.failed.
    assert teacher.requests == []
    assert await get_run(db, str(forged.cycle_id), 2) is None
    assert await staged(db, SynthCompleted) == [] and await staged(db, CycleFailed) == []
    # Redelivered: the refusal was claimed with its dead letter, so nothing happens again.
    assert await deliver(deps(db, store), forged, number=2) == "acked"
    assert len(await staged(db, DeadLettered)) == 1


async def test_iterations_that_do_not_follow_their_cycle_are_refused(db, store, teacher):
    ref = await put_spec(db, store, toy_spec(teacher.url, synthesis={"examples": 2}))
    d = deps(db, store)
    real = uuid.uuid4()
    await completed_run(db, real, 1)
    ended = uuid.uuid4()
    await completed_run(db, ended, 1, status="failed")  # iteration 1 failed: the cycle is over

    skips_ahead = iteration(ref, real, n=3)
    after_failure = iteration(ref, ended)
    other_version = iteration(ref, real, version=2)
    for event in (skips_ahead, after_failure, other_version):
        assert await deliver(d, event) == "dead_lettered_permanent"
    reasons = [letter.reason for letter in await staged(db, DeadLettered)]
    assert "never ran iteration 2 of that cycle" in reasons[0]
    assert "iteration 1 ended 'failed'" in reasons[1]
    assert "runs task 'toy-triage' version 1, not 'toy-triage' version 2" in reasons[2]

    # The real next iteration runs; a second one for the same step (another event) is refused
    # and leaves the first one's row as it was.
    first = iteration(ref, real)
    assert await deliver(d, first) == "acked"
    again = iteration(ref, real)
    assert await deliver(d, again) == "dead_lettered_permanent"
    assert (
        f"already started by event {first.event_id}" in (await staged(db, DeadLettered))[-1].reason
    )
    run = await get_run(db, str(real), 2)
    assert run.event_id == str(first.event_id) and run.status == "completed"
    assert [e.cycle_id for e in await staged(db, SynthCompleted)] == [real]
    assert await staged(db, CycleFailed) == []


async def test_registrations_are_immutable_and_monotonic(db, store, teacher):
    d = deps(db, store)
    first = await put_spec(db, store, toy_spec(teacher.url, synthesis={"examples": 2}))
    second = await put_spec(db, store, toy_spec(teacher.url, synthesis={"examples": 3}))

    def registered(version: int, ref) -> TaskRegistered:
        return TaskRegistered(
            cycle_id=None,
            producer="ops-cli",
            task_name="toy-triage",
            task_version=version,
            spec=ref,
        )

    assert await deliver(d, registered(1, first)) == "acked"
    assert await deliver(d, registered(2, second)) == "acked"
    assert await deliver(d, registered(2, second)) == "acked"  # a replay: same version, same spec
    # Version 1 again with version 2's spec: not what the registry holds.
    assert await deliver(d, registered(1, second)) == "dead_lettered_permanent"
    # Version 99 pointing at a file the registry never saw (the forged /etc/passwd case).
    outside = await store.put_bytes(b"root:x:0:0", media_type="application/json")
    assert await deliver(d, registered(99, outside)) == "dead_lettered_permanent"
    reasons = [letter.reason for letter in await staged(db, DeadLettered)]
    assert f"the task registry holds spec {first.sha256[:12]}" in reasons[0]
    assert "version 99" in reasons[1] and "has no such version" in reasons[1]
    assert await staged(db, CycleFailed) == []


def test_accepted_registrations_only_go_forward():
    from synth_data.registrations import version_problem

    known = {1: "a" * 64, 2: "b" * 64}
    assert version_problem(known, 2, "b" * 64) is None
    assert version_problem(known, 3, "c" * 64) is None
    assert "immutable" in version_problem(known, 2, "c" * 64)
    assert "only go forward" in version_problem({2: "b" * 64}, 1, "a" * 64)


# --- on a running platform, with authorization on --------------------------------------------


async def relay_as(bus: AuthNats, db: Database, identity: str, producer: str, *events: Event):
    async with db.uow() as uow:
        await uow.publish(*events)
        await uow.commit()
    creds = bus.credentials[identity]
    async with make_broker(bus.url, client_name=identity, credentials=creds) as broker:
        await broker.connect()
        await OutboxRelay(db, JetStreamPublisher(broker), producer=producer).drain()


async def sent(db: Database, cls: type[Event]) -> list:
    """Events of `cls` that a service committed and its relay put on the bus."""
    stmt = select(OutboxRow.payload).where(
        OutboxRow.subject == cls.subject, OutboxRow.sent_at.is_not(None)
    )
    async with db.uow() as uow:
        return [cls.model_validate_json(p) for p in await uow.session.scalars(stmt)]


@pytest.mark.slow
async def test_a_forged_iteration_on_a_running_platform(
    auth_nats: AuthNats, db: Database, tmp_path: Path
):
    artifacts = tmp_path / "artifacts"
    artifact_store = AsyncArtifactStore(LocalArtifactStore(artifacts))
    log = tmp_path / "synth-data.log"
    with running() as scripted:
        spec = parse_spec(toy_spec(scripted.url, synthesis={"examples": 2}))
        body = spec.model_dump_json().encode()
        ref = await artifact_store.put_bytes(body, media_type="application/json")
        await register(db, spec.name, ref)  # the registry row and task.registered, as apply does
        valid = CycleRequested(cycle_id=uuid.uuid4(), task_name=spec.name, producer="ops-cli")
        forged = iteration(ref, uuid.uuid4())
        proc = serve(
            "synth_data.main:create_app",
            auth_nats.url,
            db.url,
            log=log,
            DISTILLERY_NATS_USER="synth-data",
            DISTILLERY_NATS_PASSWORD=auth_nats.credentials[
                "synth-data"
            ].password.get_secret_value(),
            DISTILLERY_ARTIFACT_STORE="local",
            DISTILLERY_ARTIFACT_ROOT=str(artifacts),
        )
        try:
            await relay_as(auth_nats, db, "ops", "ops-cli", valid)
            await relay_as(auth_nats, db, "evaluator", "evaluator", forged)
            deadline = time.monotonic() + 90
            while not (await sent(db, SynthCompleted) and await sent(db, DeadLettered)):
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                await asyncio.sleep(0.3)
        finally:
            stop(proc)

    [done] = await sent(db, SynthCompleted)
    assert done.cycle_id == valid.cycle_id and done.task_spec == ref  # valid cycles still flow
    [letter] = await sent(db, DeadLettered)
    assert letter.cycle_id == forged.cycle_id and "refused" in letter.reason
    assert letter.original_subject == CycleIterationRequested.subject
    assert await get_run(db, str(forged.cycle_id), 2) is None
    assert await sent(db, CycleFailed) == []
    assert "Violation" not in auth_nats.server.log_path.read_text()
