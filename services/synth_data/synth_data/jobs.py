"""What a cycle event asks synth-data to do: which spec, version, iteration and slices, and
which of the student's confusions (an iteration's `error_patterns`) the batch aims at.

Two checks make a cycle event from anyone but the platform's own flow harmless:

- The spec comes from the task registry (`task_specs`, written by `distillery task apply` in
  the transaction that stages task.registered), never from the bus: "latest" is the latest
  applied version, and a pinned version or spec must be one the registry holds. A task or
  version it lacks is permanent: the registry row commits before any cycle could name it.
- synth-data is where every cycle starts (cycle.requested), so its run rows are the record of
  which cycles exist. An iteration is accepted only right after a completed synth run of the
  same cycle, task and version; anything else names a cycle (or a step of one) the platform
  never started and is refused without touching any cycle (`UnknownCycleError`). The stages
  downstream need no such record: NATS authorization lets only synth-data publish
  synth.completed, only curation dataset.published, and so on (shared/bus/auth.py).
- A cycle.requested that reuses the id of a cycle synth-data already ran is a rerun only when
  it asks for the same thing: the same task and resolved version (same spec), so it replays
  from the response cache and yields the same batch. Another task or version under that id, a
  cycle that has gone on to a later iteration, or one still running under another event is
  refused the same way (`UnknownCycleError`), so a copied id can neither rewrite a cycle's
  rows nor restart it.

A spec that cannot be read or does not fit the event is permanent too (the stage gives up and
the cycle ends).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.artifacts import ArtifactError, AsyncArtifactStore
from shared.bus import PermanentError, UnknownCycleError
from shared.db import Database
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleIterationRequested, CycleRequested
from shared.logs import get_logger
from shared.tasks import TaskSpec, TaskSpecError, spec_from_json
from shared.tasks.registry import latest_spec
from shared.tasks.tables import TaskSpecRow

from . import domain, repository
from .models import SynthRun

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
    if isinstance(event, CycleIterationRequested):
        await check_iteration(db, event)
    runs = await earlier_runs(db, event) if isinstance(event, CycleRequested) else []
    try:
        row = await registered_spec(db, event)
    except PermanentError as exc:
        if runs:  # a plain refusal would end, and rewrite the row of, the cycle it copies
            raise UnknownCycleError(f"cycle {event.cycle_id} exists; {exc}") from exc
        raise
    ref, version = row.ref(), row.version
    if runs:
        check_rerun(runs, event, version)
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


async def registered_spec(db: Database, event: CycleEvent) -> TaskSpecRow:
    """The registry's row for the spec `event` names: pinned by version and/or sha256, else the
    latest applied version of the task."""
    pinned = event.task_spec
    sha = pinned.sha256 if pinned is not None else None
    row = await latest_spec(db, event.task_name, event.task_version, sha)
    if row is None:
        wanted = [f"version {event.task_version}"] if event.task_version else []
        wanted += [f"spec {sha[:12]}"] if sha else []
        raise PermanentError(
            f"task {event.task_name!r} ({', '.join(wanted) or 'any version'}) is not in the "
            "task registry; apply its spec with `distillery task apply`"
        )
    return row


async def check_iteration(db: Database, event: CycleIterationRequested) -> None:
    """Refuse an iteration that does not follow a completed synth run of its own cycle."""
    cycle, n = str(event.cycle_id), event.iteration
    previous = await repository.get_run(db, cycle, n - 1)
    where = f"iteration {n} of cycle {cycle}"
    if previous is None:
        raise UnknownCycleError(
            f"{where}: this platform never ran iteration {n - 1} of that cycle; refused"
        )
    if previous.status != "completed":
        raise UnknownCycleError(
            f"{where}: iteration {n - 1} ended {previous.status!r}, so no iteration follows it"
        )
    ran = (previous.task_name, previous.task_version)
    if ran != (event.task_name, event.task_version):
        raise UnknownCycleError(
            f"{where}: the cycle runs task {ran[0]!r} version {ran[1]}, not "
            f"{event.task_name!r} version {event.task_version}"
        )
    current = await repository.get_run(db, cycle, n)
    if current is not None and current.event_id != str(event.event_id):
        raise UnknownCycleError(f"{where} was already started by event {current.event_id}")


async def earlier_runs(db: Database, event: CycleRequested) -> list[SynthRun]:
    """The runs of the cycle `event` names, unless it is new or this is its own redelivery."""
    runs = await repository.runs_of(db, str(event.cycle_id))
    return [] if not runs or runs[0].event_id == str(event.event_id) else runs


def check_rerun(runs: list[SynthRun], event: CycleRequested, version: int) -> None:
    """Refuse a cycle.requested that reuses a cycle id for anything but the same request."""
    first, last = runs[0], runs[-1]
    where = f"cycle {event.cycle_id} (last asked for by event {first.event_id})"
    ran = (first.task_name, first.task_version)
    if ran != (event.task_name, version):
        raise UnknownCycleError(
            f"{where} runs task {ran[0]!r} version {ran[1]}; a request for {event.task_name!r} "
            f"version {version} may not reuse its id"
        )
    if last.iteration > 1:
        raise UnknownCycleError(
            f"{where} has gone on to iteration {last.iteration}; asking for it again would "
            "restart it"
        )
    if first.status == "running":
        raise UnknownCycleError(f"{where} is still running; its own event finishes it")
