"""Use cases of synth-data, top to bottom: remember tasks; turn a cycle into a batch.

A cycle is generated before any transaction is opened (the teacher is slow and the response
cache makes a rerun free), then one transaction claims the event, records the run and stages
the answer: synth.completed, or cycle.failed when the cycle cannot go on.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.artifacts import AsyncArtifactStore
from shared.bus import Delivery
from shared.db import Database
from shared.events.catalog import (
    CycleFailed,
    CycleIterationRequested,
    SynthCompleted,
    TaskRegistered,
)
from shared.logs import get_logger
from shared.tasks.spec import Teacher as TeacherSpec

from . import domain, repository
from .jobs import CycleCannotGoOn, CycleEvent, Job, resolve_job
from .settings import SynthDataSettings
from .synthesis import Batch, Synthesiser, Tally
from .teacher import RetryPolicy, TeacherClient, TeacherUnusable, Traffic

NAME = "synth-data"
JSONL = "application/jsonl"
log = get_logger(NAME)


@dataclass
class Deps:
    db: Database
    artifacts: AsyncArtifactStore
    settings: SynthDataSettings = field(default_factory=SynthDataSettings)
    # One gate per teacher endpoint for the whole process (first spec's max_concurrency wins).
    slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    def gate(self, teacher: TeacherSpec) -> asyncio.Semaphore:
        key = f"{teacher.base_url}|{teacher.model}"
        return self.slots.setdefault(key, asyncio.Semaphore(teacher.max_concurrency))


@dataclass(frozen=True)
class Result:
    batch: Batch
    traffic: Traffic
    planned: int


async def register_task(deps: Deps, event: TaskRegistered, delivery: Delivery) -> None:
    async with deps.db.uow() as uow:
        if not await uow.claim(delivery.consumer, event):
            return
        await repository.register_task(
            uow.session, deps.db.dialect, event.task_name, event.task_version, event.spec
        )
        await uow.commit()
    log.info("task registered", task=event.task_name, version=event.task_version)


async def run_cycle(deps: Deps, event: CycleEvent, delivery: Delivery) -> None:
    if await repository.already_processed(deps.db, delivery.consumer, str(event.event_id)):
        return  # a redelivery after the commit; the claim below would refuse it anyway
    try:
        job = await resolve_job(deps.db, deps.artifacts, event)
        async with delivery.heartbeat():
            result = await _synthesise(deps, job)
    except CycleCannotGoOn as exc:
        await _fail(deps, event, delivery, str(exc))
        return
    await _complete(deps, job, result, delivery)


async def _synthesise(deps: Deps, job: Job) -> Result:
    spec, settings = job.spec, deps.settings
    violation = domain.residency_violation(
        spec.teacher, spec.residency.allowed_teacher_hosts, settings.allowed_teacher_hosts
    )
    if violation:
        raise CycleCannotGoOn(violation)
    plan = domain.plan_batch(spec, job.focus, edge_case_share=settings.edge_case_share)
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
    cache = repository.DbResponseCache(deps.db, cycle_id=job.cycle_id, iteration=job.iteration)
    retry = RetryPolicy(settings.max_attempts, settings.backoff_base_s, settings.backoff_cap_s)
    teacher = TeacherClient(
        spec.teacher,
        cache,
        allowed_hosts=spec.residency.allowed_teacher_hosts,
        platform_hosts=settings.allowed_teacher_hosts,
        retry=retry,
        slots=deps.gate(spec.teacher),
    )

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

    try:
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
    except TeacherUnusable as exc:
        raise CycleCannotGoOn(str(exc)) from None
    return Result(batch, teacher.traffic, len(plan))


async def _complete(deps: Deps, job: Job, result: Result, delivery: Delivery) -> None:
    batch, spec = result.batch, job.spec
    batch_ref = await deps.artifacts.put_bytes(domain.to_jsonl(batch.rows), media_type=JSONL)
    rejected_ref = await deps.artifacts.put_bytes(domain.to_jsonl(batch.rejected), media_type=JSONL)
    prompt, completion = await repository.spent(deps.db, job.cycle_id, job.iteration)
    cost = domain.cost_usd(spec.teacher, prompt, completion)
    slices = domain.per_slice(batch.rows)
    problem = domain.acceptance_problem(
        len(batch.rows), result.planned, deps.settings.min_accepted_share, batch.reasons
    )
    if problem:
        answer = job.event.caused(
            CycleFailed, producer=NAME, task_name=spec.name, stage="synth", reason=problem
        )
    else:
        answer = job.event.caused(
            SynthCompleted,
            producer=NAME,
            task_name=spec.name,
            task_version=job.version,
            task_spec=job.spec_ref,
            iteration=job.iteration,
            batch=batch_ref,
            examples=len(batch.rows),
            examples_per_slice=slices,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
        )
    stats = {
        "per_slice": slices,
        "rejected_by_reason": batch.reasons,
        "focus": {"use_cases": list(job.focus.use_cases), "negatives": job.focus.negatives},
    }
    traffic = result.traffic
    async with deps.db.uow() as uow:
        if not await uow.claim(delivery.consumer, job.event):
            return
        await repository.upsert_run(
            uow.session,
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
            batch_uri=batch_ref.uri,
            batch_sha256=batch_ref.sha256,
            batch_size_bytes=batch_ref.size_bytes,
            rejected_uri=rejected_ref.uri,
            rejected_sha256=rejected_ref.sha256,
            rejected_size_bytes=rejected_ref.size_bytes,
            stats=json.dumps(stats, sort_keys=True),
            reason=problem,
            finished_at=datetime.now(UTC),
        )
        await uow.publish(answer)
        await uow.commit()
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


async def _fail(deps: Deps, event: CycleEvent, delivery: Delivery, reason: str) -> None:
    iteration = event.iteration if isinstance(event, CycleIterationRequested) else 1
    async with deps.db.uow() as uow:
        if not await uow.claim(delivery.consumer, event):
            return
        await repository.upsert_run(
            uow.session,
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
        await uow.publish(
            event.caused(
                CycleFailed, producer=NAME, task_name=event.task_name, stage="synth", reason=reason
            )
        )
        await uow.commit()
    log.warning("cycle failed", stage="synth", reason=reason)
