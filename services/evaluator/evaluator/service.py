"""The evaluator's stages: a trained adapter, and a quantized variant, each against its bar.

- prepare: read the spec, golden set, probe set and general text; check the teacher's host
  against both residency lists and the candidate's manifest (a variant also needs this
  service's verdict on its source adapter). Anything wrong here is permanent;
- work: each local model's outputs from the results cache or one worker process (models are
  sha-verified when fetched: a corrupt adapter is refused before any teacher token is spent),
  the teacher's from the cache or the endpoint, then scores, gates, decision and the stored
  report. Results are cached as they arrive, so a redelivery before the commit is quick;
- record: the verdict row and the answer events, committed by the template with the claim.

Giving up is the template's: a training.completed that cannot be evaluated ends the cycle
(dead letter + cycle.failed, stage "evaluation"); a variant that cannot be is only
dead-lettered, since the adapter already passed. A verdict of "failed" is an answer, not a
give-up: record returns it with cycle.failed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from shared.artifacts import AsyncArtifactStore
from shared.bus import PermanentError
from shared.db import Database, UnitOfWork
from shared.events import Event
from shared.events.catalog import ADAPTER_VARIANT, QuantizationCompleted, TrainingCompleted
from shared.runtime.stage import Stage, StageRun
from shared.tasks.spec import TaskSpec

from . import candidate, quantized
from .inputs import Inputs, evaluation_id, read_inputs, worker_payload
from .outcome import Outcome, conclude
from .repository import SourceVerdict, add_evaluation, latest_adapter_verdict
from .results import ArtifactReader, LocalModel, ResultsCache, digest, fetch, run_local
from .settings import EvaluatorSettings
from .teacher import TeacherClient, check_residency, teacher_key, teacher_result


@dataclass(frozen=True)
class Deps:
    db: Database
    artifacts: AsyncArtifactStore
    reader: ArtifactReader
    cache: ResultsCache
    settings: EvaluatorSettings
    work_dir: Path  # fetched (sha-verified) models and worker logs
    operator_hosts: tuple[str, ...]  # DISTILLERY_ALLOWED_TEACHER_HOSTS, with the spec's list
    # Each stage runs max_concurrent_evaluations at once; the models loaded at once are what
    # the machine has to hold, so the worker runs share one limit across both stages.
    worker_slots: asyncio.Semaphore


@dataclass(frozen=True)
class AdapterJob:
    event: TrainingCompleted
    inputs: Inputs
    base: LocalModel
    candidate: LocalModel


@dataclass(frozen=True)
class VariantJob:
    event: QuantizationCompleted
    inputs: Inputs
    source: SourceVerdict
    variant: LocalModel


def stages(deps: Deps) -> list[Stage]:
    slots = deps.settings.max_concurrent_evaluations
    return [
        Stage(
            "evaluation",
            TrainingCompleted,
            prepare=partial(prepare_adapter, deps),
            work=partial(evaluate_adapter, deps),
            record=record,
            ends_cycle=True,
            concurrency=slots,
            description="training.completed -> evaluation.completed (+ iteration or failure)",
        ),
        Stage(
            "evaluation",
            QuantizationCompleted,
            prepare=partial(prepare_variant, deps),
            work=partial(evaluate_variant, deps),
            record=record,
            # The adapter already passed; it or another variant may still ship.
            ends_cycle=False,
            concurrency=slots,
            description="quantization.completed -> evaluation.completed",
        ),
    ]


async def prepare_adapter(deps: Deps, event: TrainingCompleted, run: StageRun) -> AdapterJob:
    eid = evaluation_id(run.consumer, event.event_id)
    inputs = await read_inputs(deps.reader, deps.settings, event.task_spec, eid)
    check_residency(inputs.spec, deps.operator_hosts)
    manifest = await deps.reader.manifest(event.adapter, "adapter")
    if reason := candidate.refusal(manifest, event):
        raise PermanentError(reason)
    base = LocalModel(key=event.base_model.sha256, model=event.base_model)
    cand = LocalModel(key=event.adapter.sha256, model=event.base_model, adapter=event.adapter)
    return AdapterJob(event, inputs, base, cand)


async def evaluate_adapter(deps: Deps, job: AdapterJob, run: StageRun) -> Outcome:
    inputs = job.inputs
    # Local models first: a corrupt adapter is refused before any teacher token is spent, and
    # their results are cached, so a teacher outage afterwards does not cost a second run.
    local, cached = await local_results(deps, inputs, [job.base, job.candidate], run)
    teacher, teacher_cached = await teacher_results(deps, inputs)
    replies = local[job.candidate.key]["replies"]
    judge = await judge_replies(deps, inputs, replies) if deps.settings.judge else None
    hour = deps.settings.compute_hour_usd
    verdict = candidate.verdict(
        job.event,
        inputs,
        teacher=teacher,
        base=local[job.base.key],
        candidate=local[job.candidate.key],
        cached={
            "teacher": teacher_cached,
            "base": job.base.key in cached,
            "candidate": job.candidate.key in cached,
        },
        compute_hour_usd=hour,
        judge=judge,
    )
    # What serving must reproduce: the deployer replays golden rows through an adapter it
    # serves as is (a task without quantization) and compares with these (serving parity).
    verdict.extra.update(
        replies={ADAPTER_VARIANT: dict(replies)}, max_new_tokens=deps.settings.max_new_tokens
    )
    return await conclude(deps.artifacts, hour, inputs, verdict)


async def prepare_variant(deps: Deps, event: QuantizationCompleted, run: StageRun) -> VariantJob:
    eid = evaluation_id(run.consumer, event.event_id)
    inputs = await read_inputs(deps.reader, deps.settings, event.task_spec, eid)
    manifest = await deps.reader.manifest(event.model, "quantized model")
    if reason := quantized.refusal(manifest, event):
        raise PermanentError(reason)
    golden = inputs.golden_ref.sha256
    source = await latest_adapter_verdict(deps.db, event.source_adapter.sha256, golden)
    if source is None:
        raise PermanentError(quantized.no_source(event, golden))
    variant = LocalModel(key=event.model.sha256, model=event.model)
    return VariantJob(event, inputs, source, variant)


async def evaluate_variant(deps: Deps, job: VariantJob, run: StageRun) -> Outcome:
    local, cached = await local_results(deps, job.inputs, [job.variant], run)
    hour = deps.settings.compute_hour_usd
    verdict = quantized.verdict(
        job.event,
        job.inputs,
        job.source,
        local[job.variant.key],
        cached=job.variant.key in cached,
        compute_hour_usd=hour,
    )
    return await conclude(deps.artifacts, hour, job.inputs, verdict)


async def record(uow: UnitOfWork, job: AdapterJob | VariantJob, outcome: Outcome) -> list[Event]:
    add_evaluation(uow, outcome.row)
    return outcome.events


# -- where results come from ------------------------------------------------------------------


async def local_results(
    deps: Deps, inputs: Inputs, models: list[LocalModel], run: StageRun
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Each local model's results, from the cache or from one worker run for the rest; the
    keys that came from the cache."""
    golden = inputs.golden_ref.sha256
    results: dict[str, dict[str, Any]] = {}
    for m in models:
        found = await deps.cache.get(m.key, golden, inputs.setup)
        if found is not None:
            results[m.key] = found
    cached = set(results)
    missing = [m for m in models if m.key not in results]
    if missing:
        to_run = await fetch(missing, deps.reader, deps.work_dir / "models")
        log_path = deps.work_dir / "logs" / f"{inputs.evaluation_id}.log"
        async with deps.worker_slots:
            fresh = await run_local(
                run, worker_payload(inputs, deps.settings, to_run), log_path=log_path
            )
        for m in missing:
            outputs = fresh[m.key].model_dump(mode="json")
            await deps.cache.put(m.key, golden, inputs.setup, "local", outputs)
            results[m.key] = outputs
    return results, cached


async def teacher_results(deps: Deps, inputs: Inputs) -> tuple[dict[str, Any], bool]:
    """The teacher's answers on the golden set: cached, or asked (each request cached)."""
    spec = inputs.spec
    key = teacher_key(spec.teacher)
    setup = digest({"instructions": spec.instructions, "max": deps.settings.teacher_max_tokens})
    golden = inputs.golden_ref.sha256
    cached = await deps.cache.get(key, golden, setup)
    if cached is not None:
        return cached, True
    async with teacher_client(deps, spec) as client:
        answers = await client.answer_golden(spec.instructions, inputs.rows)
    result = teacher_result(inputs.rows, answers)
    await deps.cache.put(key, golden, setup, "teacher", result)
    return result, False


async def judge_replies(
    deps: Deps, inputs: Inputs, replies: dict[str, str]
) -> dict[str, float | None]:
    spec = inputs.spec
    async with teacher_client(deps, spec) as client:
        verdicts = await client.judge(spec.instructions, inputs.rows, replies)
    return candidate.judge_summary(inputs, replies, verdicts)


def teacher_client(deps: Deps, spec: TaskSpec) -> TeacherClient:
    return TeacherClient(
        spec.teacher,
        deps.db,
        max_tokens=deps.settings.teacher_max_tokens,
        spec_hosts=spec.residency.allowed_teacher_hosts,
        operator_hosts=deps.operator_hosts,
    )
