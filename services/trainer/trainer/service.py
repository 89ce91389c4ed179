"""The trainer's one stage: a published dataset in, a LoRA adapter and its report out.

- prepare: read the spec, refuse what cannot be trained (no imported base, `gkd`, a base that
  is not a model, a dataset rendered with another system prompt than the spec's student
  prompt), put the base model and the dataset on local disk and restore the run folder from
  the database and the store, so a run killed anywhere resumes from its last checkpoint;
- work: train in a worker process, then store the adapter (files first, manifest last, with
  the student prompt and output schema it is to be served with) and the report;
- record: the run row and `training.completed`, committed by the template with the claim;
- record_failure: the failed run row, when the template gives up (it writes the dead letter
  and `cycle.failed` naming the stage in the same transaction).
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

from shared.artifacts import ArtifactError, AsyncArtifactStore
from shared.bus import PermanentError
from shared.db import Database, UnitOfWork
from shared.events import Event
from shared.events.base import ArtifactRef
from shared.events.catalog import DatasetPublished, TrainingCompleted
from shared.logs import get_logger
from shared.models import ModelFormatError, fetch_model_dir, read_manifest, store_model_dir
from shared.runtime.stage import Stage, StageRun
from shared.tasks import TaskSpec, TaskSpecError, spec_from_json

from .data import DatasetError, read_rows
from .domain import (
    ProgressThrottle,
    TrialRecord,
    base_model_refusal,
    best_trial,
    dataset_prompt_refusal,
    refusal,
    rows_prompt_refusal,
    run_id_for,
    serving_extra,
    training_report,
)
from .ml import RecipeOptions
from .progress import RunProgress
from .repository import add_run
from .restore import restore_run_dir
from .settings import NAME, TrainerSettings
from .worker import Search, TrainPayload, TrainResult

WORKER = "trainer.worker:train"
log = get_logger(NAME)


@dataclass(frozen=True)
class Deps:
    db: Database
    artifacts: AsyncArtifactStore
    settings: TrainerSettings
    work_dir: Path  # run folders and the base-model cache; survives restarts


@dataclass(frozen=True)
class Job:
    event: DatasetPublished
    spec: TaskSpec
    run_id: uuid.UUID
    base: ArtifactRef
    payload: TrainPayload


@dataclass(frozen=True)
class Outputs:
    best: TrialRecord
    adapter: ArtifactRef
    report: ArtifactRef


def stages(deps: Deps) -> list[Stage]:
    return [
        Stage(
            "training",
            DatasetPublished,
            prepare=partial(prepare, deps),
            work=partial(work, deps),
            record=record,
            on_give_up=record_failure,
            # One training at a time: a second on the same machine would only slow both.
            batch_size=1,
            description="dataset.published -> LoRA adapter + report -> training.completed",
        )
    ]


def run_dir(deps: Deps, run_id: uuid.UUID) -> Path:
    return deps.work_dir / "runs" / str(run_id)


async def prepare(deps: Deps, event: DatasetPublished, run: StageRun) -> Job:
    run_id = run_id_for(event.event_id)
    spec = await read_spec(deps, event)
    if reason := refusal(spec):
        raise PermanentError(reason)
    base = spec.student.base_model_ref
    assert base is not None  # refusal() names the missing import
    store = deps.artifacts.sync
    folder = run_dir(deps, run_id)
    try:
        manifest = await run.thread(read_manifest, store, base)
    except (ArtifactError, ModelFormatError) as exc:
        raise PermanentError(f"base model unusable: {exc}") from None
    if reason := base_model_refusal(spec, manifest):
        raise PermanentError(reason)
    if reason := dataset_prompt_refusal(spec, await read_dataset_manifest(deps, event)):
        raise PermanentError(f"dataset {event.dataset_version[:12]}: {reason}")
    try:
        model_dir = await run.thread(
            fetch_model_dir, store, base, deps.work_dir / "models" / base.sha256
        )
        train = await deps.artifacts.get_file(event.train, folder / "data" / "train.jsonl")
        validation = await deps.artifacts.get_file(
            event.validation, folder / "data" / "validation.jsonl"
        )
        finished = await restore_run_dir(deps.db, store, run_id, folder)
    except (ArtifactError, ModelFormatError) as exc:
        raise PermanentError(f"input artifact unusable: {exc}") from None
    try:
        rows = chain(read_rows(train), read_rows(validation))  # read in the thread, lazily
        skew = await run.thread(rows_prompt_refusal, spec, rows)
    except (DatasetError, UnicodeDecodeError) as exc:
        # Bytes that are not UTF-8 stay so on every delivery: permanent, like a bad row.
        raise PermanentError(f"dataset {event.dataset_version[:12]}: {exc}") from None
    if skew:
        raise PermanentError(f"dataset {event.dataset_version[:12]}: {skew}")
    payload = TrainPayload(
        run_dir=folder,
        model_dir=model_dir,
        train=train,
        validation=validation,
        options=recipe_options(deps.settings, spec),
        training=Search(
            search=spec.training.search, trials=spec.training.trials, seed=spec.training.seed
        ),
        replay=spec.training.replay,
        finished=finished,
        torch_threads=deps.settings.torch_threads,
        launcher=deps.settings.launcher,
    )
    return Job(event, spec, run_id, base, payload)


async def read_spec(deps: Deps, event: DatasetPublished) -> TaskSpec:
    try:
        return spec_from_json(await deps.artifacts.get_bytes(event.task_spec))
    except (ArtifactError, TaskSpecError) as exc:
        raise PermanentError(f"task spec {event.task_spec.uri}: {exc}") from None


async def read_dataset_manifest(deps: Deps, event: DatasetPublished) -> Any:
    try:
        return json.loads(await deps.artifacts.get_bytes(event.manifest))
    except (ArtifactError, ValueError) as exc:
        raise PermanentError(f"dataset manifest {event.manifest.uri}: {exc}") from None


def recipe_options(s: TrainerSettings, spec: TaskSpec) -> RecipeOptions:
    return RecipeOptions(
        max_seq_len=spec.student.max_seq_len,
        batch_size=spec.training.batch_size,
        gradient_accumulation_steps=spec.training.gradient_accumulation_steps,
        seed=spec.training.seed,
        precision=s.precision,
        gradient_checkpointing=s.gradient_checkpointing,
        batching=s.batching,
        quantize=s.quantize,
        loss=s.loss,
        save_steps=s.checkpoint_steps,
        evaluations=s.evaluations_per_trial,
        max_steps=s.max_steps,
        memory_budget_mib=s.memory_budget_mib,
        lora_dropout=s.lora_dropout,
        text_loss=spec.training.replay.text_loss,
    )


async def work(deps: Deps, job: Job, run: StageRun) -> Outputs:
    folder = job.payload.run_dir
    log.info(
        "training",
        run_id=str(job.run_id),
        task=job.spec.name,
        resumed_trials=len(job.payload.finished),
    )
    progress = RunProgress(
        deps.db,
        deps.artifacts,
        job.event,
        job.run_id,
        job.base.sha256,
        ProgressThrottle(deps.settings.progress_interval_s),
    )
    result = await run.process(
        WORKER, job.payload, TrainResult, on_progress=progress, log_path=folder / "worker.log"
    )
    best = best_trial(result.trials)
    assert best is not None  # the worker refuses a search without one
    # store_model_dir uploads every file before the manifest: no half-written adapter.
    adapter = await run.thread(
        partial(
            store_model_dir,
            deps.artifacts.sync,
            result.adapter_dir,
            job.spec.name,
            kind="adapter",
            base_model=job.base.sha256,
            extra={
                "run_id": str(job.run_id),
                "dataset_version": job.event.dataset_version,
                # The quantizer calibrates GPTQ on the rows the adapter learnt from.
                "train_split": job.event.train.model_dump(mode="json"),
                # What the deployer/gateway serves it with: what it was trained and evaluated with.
                **serving_extra(job.spec),
            },
        )
    )
    report = await store_report(deps, job, result, best, adapter)
    if not deps.settings.keep_run_dirs:
        # Safe before the commit: every trial's adapter and checkpoint is in the store and on
        # trainer_trials, so a redelivery restores the folder and trains nothing again.
        await run.thread(shutil.rmtree, folder, True)
    return Outputs(best, adapter, report)


async def store_report(
    deps: Deps, job: Job, result: TrainResult, best: TrialRecord, adapter: ArtifactRef
) -> ArtifactRef:
    report = training_report(
        run_id=job.run_id,
        cycle_id=job.event.cycle_id,
        task_name=job.event.task_name,
        task_version=job.event.task_version,
        dataset_version=job.event.dataset_version,
        base_model_sha256=job.base.sha256,
        best=best,
        trials=result.trials,
        worker=result.model_dump(mode="json"),
    )
    report["adapter"] = adapter.sha256
    body = json.dumps(report, sort_keys=True, indent=1).encode()
    return await deps.artifacts.put_bytes(body, media_type="application/json")


async def record(uow: UnitOfWork, job: Job, out: Outputs) -> list[Event]:
    event, best = job.event, out.best
    hyperparameters = {**best.params, "trial": best.number}
    add_run(
        uow,
        event,
        job.run_id,
        "completed",
        base_model_sha256=job.base.sha256,
        adapter_sha256=out.adapter.sha256,
        adapter=out.adapter.model_dump_json(),
        report=out.report.model_dump_json(),
        hyperparameters=json.dumps(hyperparameters, sort_keys=True),
        validation_loss=best.validation_loss,
        best_trial=best.number,
    )
    return [
        event.caused(
            TrainingCompleted,
            producer=NAME,
            # Deterministic per run: should a run ever answer twice, the outbox and
            # JetStream's duplicate window keep one.
            event_id=uuid.uuid5(job.run_id, "completed"),
            run_id=job.run_id,
            task_name=event.task_name,
            task_version=event.task_version,
            task_spec=event.task_spec,
            iteration=event.iteration,
            dataset_version=event.dataset_version,
            base_model=job.base,
            adapter=out.adapter,
            report=out.report,
            hyperparameters=hyperparameters,
            validation_loss=best.validation_loss,
        )
    ]


async def record_failure(uow: UnitOfWork, event: DatasetPublished, reason: str) -> None:
    add_run(uow, event, run_id_for(event.event_id), "failed", reason=reason)
