"""A cycle.requested that reuses an existing cycle id (issue 10): a rerun of the same request
replays from the response cache; anything else under that id is refused without touching the
cycle (a dead letter only: no run row rewritten, no synth.completed, no cycle.failed).

The stage under the real consumer policy, in process, SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.artifacts import AsyncArtifactStore, LocalArtifactStore
from shared.events.catalog import CycleFailed, DeadLettered, SynthCompleted
from synth_data.repository import get_run
from tests.fixtures.teacher_server import ScriptedTeacher, running, toy_spec
from tests.integration.test_synth_service import (
    completed_run,
    cycle,
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


async def test_the_same_request_again_is_a_rerun_and_another_one_is_refused(db, store, teacher):
    v1 = await put_spec(db, store, toy_spec(teacher.url, synthesis={"examples": 2}))
    v2 = await put_spec(db, store, toy_spec(teacher.url, synthesis={"examples": 3}))
    d = deps(db, store)
    first = cycle(v1)
    assert await deliver(d, first) == "acked"
    [done] = await staged(db, SynthCompleted)
    asked = len(teacher.requests)

    # Same task, same version, a new event: replayed from the cache, the same batch.
    assert await deliver(d, cycle(v1, cycle_id=first.cycle_id)) == "acked"
    assert len(teacher.requests) == asked
    assert (await staged(db, SynthCompleted))[-1].batch == done.batch
    # Unpinned, "latest" resolves to version 2: not what this cycle runs.
    latest = cycle(None, cycle_id=first.cycle_id)
    pinned_v2 = cycle(v2, cycle_id=first.cycle_id, task_version=2)
    other_task = cycle(None, cycle_id=first.cycle_id, task_name="other-task")
    for event in (latest, pinned_v2):
        assert await deliver(d, event) == "dead_lettered_permanent"
    reasons = [letter.reason for letter in await staged(db, DeadLettered)]
    assert all(
        "runs task 'toy-triage' version 1; a request for 'toy-triage' version 2 may not reuse "
        "its id" in reason
        for reason in reasons
    ), reasons
    # A task the registry lacks: refused too, and without ending the cycle whose id it copies.
    assert await deliver(d, other_task) == "dead_lettered_permanent"
    last = (await staged(db, DeadLettered))[-1].reason
    assert f"cycle {first.cycle_id} exists;" in last and "not in the task registry" in last

    run = await get_run(db, str(first.cycle_id))
    assert (run.task_version, run.status, run.batch_sha256) == (1, "completed", done.batch.sha256)
    assert len(await staged(db, SynthCompleted)) == 2
    assert await staged(db, CycleFailed) == []
    assert len(teacher.requests) == asked  # nothing refused ever reached the teacher


async def test_a_cycle_that_went_on_or_still_runs_is_not_restarted(db, store, teacher):
    ref = await put_spec(db, store, toy_spec(teacher.url, synthesis={"examples": 2}))
    d = deps(db, store)
    went_on, running_cycle = uuid.uuid4(), uuid.uuid4()
    await completed_run(db, went_on, 1)
    await completed_run(db, went_on, 2)
    await completed_run(db, running_cycle, 1, status="running")

    assert await deliver(d, cycle(ref, cycle_id=went_on)) == "dead_lettered_permanent"
    assert await deliver(d, cycle(ref, cycle_id=running_cycle)) == "dead_lettered_permanent"
    later, still = [letter.reason for letter in await staged(db, DeadLettered)]
    assert "has gone on to iteration 2; asking for it again would restart it" in later
    assert "is still running; its own event finishes it" in still
    assert (await get_run(db, str(running_cycle))).status == "running"  # not overwritten
    assert teacher.requests == []
    assert await staged(db, SynthCompleted) == [] and await staged(db, CycleFailed) == []

    # A cycle whose first run failed may be asked for again (the same request): it runs.
    failed = uuid.uuid4()
    await completed_run(db, failed, 1, status="failed")
    assert await deliver(d, cycle(ref, cycle_id=failed)) == "acked"
    assert (await get_run(db, str(failed))).status == "completed"
    [done] = await staged(db, SynthCompleted)
    assert done.cycle_id == failed
