"""What a cycle event asks synth-data to do: which spec, version, iteration and slices, and
which of the student's confusions (an iteration's `error_patterns`) the batch aims at.

A spec that cannot be read or does not fit the event is permanent (the stage gives up and the
cycle ends); a task not registered yet is transient, since task.registered may be on its way.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.artifacts import ArtifactError, AsyncArtifactStore
from shared.bus import PermanentError, TransientError
from shared.db import Database
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleIterationRequested, CycleRequested
from shared.logs import get_logger
from shared.tasks import TaskSpec, TaskSpecError, spec_from_json

from . import domain, repository

log = get_logger(__name__)
CycleEvent = CycleRequested | CycleIterationRequested


@dataclass(frozen=True)
class Job:
    event: CycleEvent
    spec: TaskSpec
    spec_ref: ArtifactRef
    version: int
    iteration: int
    focus: domain.Focus

    @property
    def cycle_id(self) -> str:
        return str(self.event.cycle_id)


async def resolve_job(db: Database, artifacts: AsyncArtifactStore, event: CycleEvent) -> Job:
    """The spec, version, iteration and slices a cycle event asks for."""
    ref, version = event.task_spec, event.task_version
    if ref is None or version is None:
        sha = ref.sha256 if ref is not None else None
        row = await repository.find_task(db, event.task_name, version, sha)
        if row is None:
            wanted = (
                f"version {version}" if version else (f"spec {sha[:12]}" if sha else "any version")
            )
            # task.registered may still be on its way; redelivery (finite) gives it time.
            raise TransientError(f"task {event.task_name!r} ({wanted}) is not registered here yet")
        ref, version = ref or row.ref(), row.version
    try:
        spec = spec_from_json(await artifacts.get_bytes(ref), source=ref.uri)
    except (ArtifactError, TaskSpecError) as exc:
        raise PermanentError(f"task spec {ref.uri}: {exc}") from exc
    if spec.name != event.task_name:
        raise PermanentError(f"spec {ref.uri} is task {spec.name!r}, not {event.task_name!r}")
    failing = event.failing_slices if isinstance(event, CycleIterationRequested) else None
    patterns = event.error_patterns if isinstance(event, CycleIterationRequested) else []
    confusions = [(p.field, p.expected, p.got, p.count) for p in patterns]
    scope = domain.focus(spec, failing, confusions)
    if scope.fallback:
        log.warning("no failing slice is a slice of this task; regenerating all", failing=failing)
    if confusions:
        # Patterns on a field the output has not are dropped, and only the most frequent kept.
        aims = [f"{a.field}: {a.expected} (got {a.got}) x{a.count}" for a in scope.aims]
        log.info("aiming at the student's confusions", aims=aims, patterns=len(confusions))
    iteration = event.iteration if isinstance(event, CycleIterationRequested) else 1
    return Job(event, spec, ref, version, iteration, scope)
