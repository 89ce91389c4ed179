"""task.registered, checked: only what the task registry holds, versions immutable and never
going back.

Cycles resolve their spec from the registry table (`task_specs`), not from these events
(jobs.py). Checking the events anyway turns a forged or replayed registration into a dead
letter naming it, instead of a silent row, also where the bus runs without authorization.
The registry row commits in the transaction that stages the event, so a genuine event always
finds it.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.bus import PermanentError
from shared.db import Database, UnitOfWork
from shared.events import Event
from shared.events.catalog import TaskRegistered
from shared.logs import get_logger
from shared.runtime.stage import StageRun
from shared.tasks.registry import latest_spec

from . import repository

log = get_logger(__name__)


async def check(db: Database, event: TaskRegistered, run: StageRun) -> TaskRegistered:
    """The stage's prepare: PermanentError (a dead letter, no cycle) for a refused event."""
    name, version, sha = event.task_name, event.task_version, event.spec.sha256
    row = await latest_spec(db, name, version)
    if row is None or row.sha256 != sha:
        found = f"holds spec {row.sha256[:12]}" if row else "has no such version"
        raise PermanentError(
            f"task.registered {name!r} version {version} (spec {sha[:12]}) refused: "
            f"the task registry {found}"
        )
    problem = version_problem(await repository.known_versions(db, name), version, sha)
    if problem:
        raise PermanentError(f"task.registered {name!r} refused: {problem}")
    return event


def version_problem(known: Mapping[int, str], version: int, sha256: str) -> str | None:
    """Why (version, spec) cannot follow the registrations already accepted, or None.

    The same version with the same spec again is a harmless replay; with another spec it would
    change what a version means, and a version below the newest would make "latest" go back.
    """
    if version in known:
        if known[version] == sha256:
            return None
        return f"version {version} is spec {known[version][:12]}, not {sha256[:12]}: immutable"
    newest = max(known, default=0)
    if version < newest:
        return f"version {version} after version {newest}: versions only go forward"
    return None


async def as_is(event: TaskRegistered, run: StageRun) -> TaskRegistered:
    return event


async def record(
    db: Database, tx: UnitOfWork, event: TaskRegistered, _: TaskRegistered
) -> list[Event]:
    """The stage's record: the accepted registration, in the claim's transaction."""
    await repository.register_task(
        tx.session, db.dialect, event.task_name, event.task_version, event.spec
    )
    log.info("task registered", task=event.task_name, version=event.task_version)
    return []
