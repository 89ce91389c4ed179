"""synth-data's stages, top to bottom: remember tasks; turn a cycle into a batch.

- task.registered: check it against the task registry (versions immutable and monotonic) and
  remember it; cycles resolve specs from the registry itself (jobs.py), never from the bus.
- relabel.requested (relabel.py): production inputs answered again for the feedback loop;
- cycle.requested / cycle.iteration.requested (stage "synth"): prepare resolves the job and
  checks residency; work plans the batch, asks the teacher and stores the batch artifacts;
  record writes the run row and answers synth.completed, or cycle.failed when too few examples
  passed (a normal answer: the batch is not worth training on).

The template (shared.runtime.stage) owns the inbox, heartbeat, claim, one transaction and
giving up; `record_failure` marks the run failed inside the give-up. Progress rows are written
during work in short transactions of their own, so a long batch is visible while it runs.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from shared.artifacts import AsyncArtifactStore
from shared.db import Database, UnitOfWork
from shared.events import Event
from shared.events.base import ArtifactRef
from shared.events.catalog import (
    CycleFailed,
    CycleIterationRequested,
    CycleRequested,
    SynthCompleted,
    TaskRegistered,
)
from shared.logs import get_logger
from shared.runtime.stage import Stage, StageRun

from . import domain, registrations, relabel, repository
from .jobs import CycleEvent, Job, resolve_job
from .settings import NAME, SynthDataSettings
from .synthesis import Batch, Synthesiser, Tally
from .teacher import Traffic, refuse_outside_residency, teacher_for

JSONL = "application/jsonl"
# Answer ids derive from the event answered, so a redelivery re-stages the very same event.
ANSWER_IDS = uuid.UUID("6f1d3c52-8a0e-4b7e-9d3a-5c2f0e1b7a94")
log = get_logger(NAME)


@dataclass
class Deps:
    db: Database
    artifacts: AsyncArtifactStore
    settings: SynthDataSettings = field(default_factory=SynthDataSettings)
    # PlatformSettings.allowed_teacher_hosts (DISTILLERY_ALLOWED_TEACHER_HOSTS), from handlers.
    operator_hosts: Sequence[str] = ()


@dataclass(frozen=True)
class Result:
    batch: Batch
    traffic: Traffic
    planned: int
    batch_ref: ArtifactRef
    rejected_ref: ArtifactRef
    # Tokens paid for this cycle iteration over every delivery, not only this one.
    prompt_tokens: int
    completion_tokens: int


def stages(deps: Deps) -> list[Stage]:
    synth = {
        "prepare": partial(prepare, deps),
        "work": partial(work, deps),
        "record": partial(record, deps),
        "on_give_up": partial(record_failure, deps),
    }
    return [
        # Outside any cycle: a refused or unwritable registration only dead-letters.
        Stage(
            "synth",
            TaskRegistered,
            partial(registrations.check, deps.db),
            registrations.as_is,
            partial(registrations.record, deps.db),
            ends_cycle=False,
        ),
        Stage("synth", CycleRequested, **synth),
        Stage("synth", CycleIterationRequested, **synth),
        relabel.stage(deps),
    ]


# --- cycle.requested, cycle.iteration.requested ---------------------------------------------


async def prepare(deps: Deps, event: CycleEvent, run: StageRun) -> Job:
    job = await resolve_job(deps.db, deps.artifacts, event)
    refuse_outside_residency(job.spec, deps.settings, deps.operator_hosts)
    return job


async def work(deps: Deps, job: Job, run: StageRun) -> Result:
    spec = job.spec
    plan = domain.plan_batch(spec, job.focus, edge_case_share=deps.settings.edge_case_share)
    await repository.start_run(
        deps.db,
        job.cycle_id,
        job.iteration,
        event_id=str(job.event.event_id),
        task_name=spec.name,
        task_version=job.version,
        status="running",
        total=len(plan),
        done=0,
        accepted=0,
        rejected=0,
    )
    log.info(
        "synthesis started",
        task=spec.name,
        iteration=job.iteration,
        examples=len(plan),
        slices=dict(sorted(Counter(p.slice for p in plan).items())),
    )
    batch, traffic = await ask_teacher(deps, job, plan)
    batch_ref = await deps.artifacts.put_bytes(domain.to_jsonl(batch.rows), media_type=JSONL)
    rejected_ref = await deps.artifacts.put_bytes(domain.to_jsonl(batch.rejected), media_type=JSONL)
    prompt, completion = await repository.spent(deps.db, job.cycle_id, job.iteration)
    return Result(batch, traffic, len(plan), batch_ref, rejected_ref, prompt, completion)


async def ask_teacher(deps: Deps, job: Job, plan: list[domain.Planned]) -> tuple[Batch, Traffic]:
    spec, settings = job.spec, deps.settings
    cache = repository.DbResponseCache(deps.db, cycle_id=job.cycle_id, iteration=job.iteration)
    teacher = teacher_for(spec, cache, settings, deps.operator_hosts)

    async def progress(tally: Tally) -> None:
        traffic = teacher.traffic
        fields = {
            "done": tally.done,
            "accepted": tally.accepted,
            "rejected": tally.rejected,
            "requests": traffic.requests,
            "cache_hits": traffic.cache_hits,
            "retries": traffic.retries,
        }
        await repository.update_run(deps.db, job.cycle_id, job.iteration, **fields)
        # "usage", not "*_tokens": the log redactor hides any key that mentions a token.
        usage = {"prompt": traffic.prompt_tokens, "completion": traffic.completion_tokens}
        log.info("synthesis progress", total=tally.total, usage=usage, **fields)

    async with teacher:
        synthesiser = Synthesiser(
            spec,
            teacher,
            settings,
            scope=f"{job.cycle_id}/{job.iteration}",
            iteration=job.iteration,
            progress=progress,
        )
        batch = await synthesiser.run(plan)
    return batch, teacher.traffic


async def record(deps: Deps, tx: UnitOfWork, job: Job, result: Result) -> list[Event]:
    batch, spec, traffic = result.batch, job.spec, result.traffic
    prompt, completion = result.prompt_tokens, result.completion_tokens
    cost = domain.cost_usd(spec.teacher, prompt, completion)
    slices = domain.per_slice(batch.rows)
    problem = domain.acceptance_problem(
        len(batch.rows), result.planned, deps.settings.min_accepted_share, batch.reasons
    )
    answer: Event
    if problem:
        answer = job.event.caused(
            CycleFailed,
            event_id=answer_id(job.event, CycleFailed),
            producer=NAME,
            task_name=spec.name,
            stage="synth",
            reason=problem,
        )
    else:
        answer = job.event.caused(
            SynthCompleted,
            event_id=answer_id(job.event, SynthCompleted),
            producer=NAME,
            task_name=spec.name,
            task_version=job.version,
            task_spec=job.spec_ref,
            iteration=job.iteration,
            batch=result.batch_ref,
            examples=len(batch.rows),
            examples_per_slice=slices,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            # Production feedback comes with the cycle; later iterations carry it in the dataset.
            feedback_dataset=(
                job.event.feedback_dataset if isinstance(job.event, CycleRequested) else None
            ),
        )
    stats = {
        "per_slice": slices,
        "rejected_by_reason": batch.reasons,
        "focus": {"use_cases": list(job.focus.use_cases), "negatives": job.focus.negatives},
    }
    await repository.upsert_run(
        tx.session,
        deps.db.dialect,
        job.cycle_id,
        job.iteration,
        event_id=str(job.event.event_id),
        task_name=spec.name,
        task_version=job.version,
        status="failed" if problem else "completed",
        total=result.planned,
        done=result.planned,
        accepted=len(batch.rows),
        rejected=len(batch.rejected),
        requests=traffic.requests,
        cache_hits=traffic.cache_hits,
        retries=traffic.retries,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost,
        batch_uri=result.batch_ref.uri,
        batch_sha256=result.batch_ref.sha256,
        batch_size_bytes=result.batch_ref.size_bytes,
        rejected_uri=result.rejected_ref.uri,
        rejected_sha256=result.rejected_ref.sha256,
        rejected_size_bytes=result.rejected_ref.size_bytes,
        stats=json.dumps(stats, sort_keys=True),
        reason=problem,
        finished_at=datetime.now(UTC),
    )
    log.info(
        "synthesis finished",
        outcome="failed" if problem else "completed",
        accepted=len(batch.rows),
        rejected=len(batch.rejected),
        per_slice=slices,
        rejected_by_reason=batch.reasons,
        cost_usd=cost,
        usage={"prompt": prompt, "completion": completion},
        requests=traffic.requests,
        cache_hits=traffic.cache_hits,
    )
    return [answer]


async def record_failure(deps: Deps, tx: UnitOfWork, event: CycleEvent, reason: str) -> None:
    """The run's failed row, in the template's give-up transaction (with cycle.failed)."""
    iteration = event.iteration if isinstance(event, CycleIterationRequested) else 1
    await repository.upsert_run(
        tx.session,
        deps.db.dialect,
        str(event.cycle_id),
        iteration,
        event_id=str(event.event_id),
        task_name=event.task_name,
        task_version=event.task_version,
        status="failed",
        reason=reason,
        finished_at=datetime.now(UTC),
    )


def answer_id(event: Event, answer: type[Event]) -> uuid.UUID:
    return uuid.uuid5(ANSWER_IDS, f"{event.event_id}:{answer.subject}")
