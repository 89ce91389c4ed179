"""The trainer's use case: a published dataset in, a LoRA adapter and its report out.

Read top to bottom: skip a run already finished → read the spec → refuse what cannot be
trained → put the base model and dataset on local disk, restoring the run folder from the
store if this machine has not seen the run → train in a worker process → store the adapter
(files first, manifest last) and the report → claim the event and commit the run row with
`training.completed` in one transaction. A failure that retrying cannot fix commits a
failed-run row with `cycle.failed` instead; so does the last allowed delivery of a transient one.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from shared.artifacts import ArtifactError, AsyncArtifactStore
from shared.bus import PermanentError
from shared.db import Database
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleFailed, DatasetPublished, TrainingCompleted
from shared.logs import get_logger
from shared.models import ModelFormatError, fetch_model_dir, store_model_dir
from shared.runtime.worker import run_in_worker
from shared.tasks import TaskSpec, TaskSpecError, spec_from_json
from trainer.domain import (
    ProgressThrottle,
    TrialRecord,
    best_trial,
    refusal,
    run_id_for,
    training_report,
)
from trainer.models import TrainerRun
from trainer.progress import NAME, RunProgress
from trainer.restore import restore_run_dir
from trainer.settings import TrainerSettings

WORKER = "trainer.worker:train"
log = get_logger(NAME)


class Trainer:
    def __init__(
        self, db: Database, artifacts: AsyncArtifactStore, settings: TrainerSettings, work_dir: Path
    ) -> None:
        self.db, self.artifacts, self.settings = db, artifacts, settings
        self.work_dir = Path(work_dir)

    async def train_dataset(
        self,
        event: DatasetPublished,
        *,
        consumer: str,
        heartbeat: AbstractAsyncContextManager[None] | None = None,
        last_delivery: bool = False,
    ) -> None:
        run_id = run_id_for(event.event_id)
        if await self._finished(run_id):
            return
        async with heartbeat or nullcontext():
            try:
                spec = await self._spec(event)
                reason = refusal(spec)
                if reason:
                    raise PermanentError(reason)
                base = spec.student.base_model_ref
                assert base is not None
                result = await self._train(event, spec, run_id, base)
                records = [TrialRecord.from_dict(t) for t in result["trials"]]
                best = best_trial(records)
                assert best is not None  # the worker refuses a search without one
                adapter, report = await self._store_outputs(event, spec, run_id, base, result)
            except PermanentError as exc:
                await self._fail(event, run_id, consumer, str(exc))
                return
            except Exception as exc:
                if last_delivery:
                    await self._fail(event, run_id, consumer, f"gave up: {exc!r}")
                raise
        await self._complete(event, run_id, consumer, base, best, adapter, report)
        if not self.settings.keep_run_dirs:
            await asyncio.to_thread(shutil.rmtree, self.run_dir(run_id), True)

    def run_dir(self, run_id: uuid.UUID) -> Path:
        return self.work_dir / "runs" / str(run_id)

    async def _finished(self, run_id: uuid.UUID) -> bool:
        async with self.db.uow() as uow:
            found = await uow.session.scalar(
                select(TrainerRun.id).where(TrainerRun.run_id == str(run_id))
            )
        return found is not None

    async def _spec(self, event: DatasetPublished) -> TaskSpec:
        try:
            return spec_from_json(await self.artifacts.get_bytes(event.task_spec))
        except (ArtifactError, TaskSpecError) as exc:
            raise PermanentError(f"task spec {event.task_spec.uri}: {exc}") from None

    async def _train(
        self, event: DatasetPublished, spec: TaskSpec, run_id: uuid.UUID, base: ArtifactRef
    ) -> dict[str, Any]:
        run_dir = self.run_dir(run_id)
        store = self.artifacts.sync
        try:
            model_dir = await asyncio.to_thread(
                fetch_model_dir, store, base, self.work_dir / "models" / base.sha256
            )
            train = await self.artifacts.get_file(event.train, run_dir / "data" / "train.jsonl")
            validation = await self.artifacts.get_file(
                event.validation, run_dir / "data" / "validation.jsonl"
            )
            finished = await restore_run_dir(self.db, store, run_id, run_dir)
        except (ArtifactError, ModelFormatError) as exc:
            raise PermanentError(f"input artifact unusable: {exc}") from None
        log.info("training", run_id=str(run_id), task=spec.name, resumed_trials=len(finished))
        payload = {
            "run_dir": str(run_dir),
            "model_dir": str(model_dir),
            "train": str(train),
            "validation": str(validation),
            "options": self._options(spec),
            "training": {
                "search": spec.training.search.model_dump(),
                "trials": spec.training.trials,
                "seed": spec.training.seed,
            },
            "finished": [r.as_dict() for r in finished],
            "torch_threads": self.settings.torch_threads,
            "launcher": self.settings.launcher,
        }
        progress = RunProgress(
            self.db,
            self.artifacts,
            event,
            run_id,
            base.sha256,
            ProgressThrottle(self.settings.progress_interval_s),
        )
        return await run_in_worker(
            WORKER, payload, on_progress=progress, log_path=run_dir / "worker.log"
        )

    def _options(self, spec: TaskSpec) -> dict[str, Any]:
        s = self.settings
        return {
            "max_seq_len": spec.student.max_seq_len,
            "batch_size": spec.training.batch_size,
            "gradient_accumulation_steps": spec.training.gradient_accumulation_steps,
            "seed": spec.training.seed,
            "precision": s.precision,
            "gradient_checkpointing": s.gradient_checkpointing,
            "batching": s.batching,
            "quantize": s.quantize,
            "loss": s.loss,
            "save_steps": s.checkpoint_steps,
            "evaluations": s.evaluations_per_trial,
            "max_steps": s.max_steps,
            "memory_budget_mib": s.memory_budget_mib,
            "lora_dropout": s.lora_dropout,
        }

    async def _store_outputs(
        self,
        event: DatasetPublished,
        spec: TaskSpec,
        run_id: uuid.UUID,
        base: ArtifactRef,
        result: dict[str, Any],
    ) -> tuple[ArtifactRef, ArtifactRef]:
        records = [TrialRecord.from_dict(t) for t in result["trials"]]
        best = best_trial(records)
        assert best is not None
        # store_model_dir uploads every file before the manifest: no half-written adapter.
        adapter = await asyncio.to_thread(
            store_model_dir,
            self.artifacts.sync,
            Path(result["adapter_dir"]),
            spec.name,
            kind="adapter",
            base_model=base.sha256,
            extra={"run_id": str(run_id), "dataset_version": event.dataset_version},
        )
        report = training_report(
            run_id=run_id,
            cycle_id=event.cycle_id,
            task_name=event.task_name,
            task_version=event.task_version,
            dataset_version=event.dataset_version,
            base_model_sha256=base.sha256,
            best=best,
            trials=records,
            worker=result,
        )
        report["adapter"] = adapter.sha256
        body = json.dumps(report, sort_keys=True, indent=1).encode()
        return adapter, await self.artifacts.put_bytes(body, media_type="application/json")

    async def _complete(
        self,
        event: DatasetPublished,
        run_id: uuid.UUID,
        consumer: str,
        base: ArtifactRef,
        best: TrialRecord,
        adapter: ArtifactRef,
        report: ArtifactRef,
    ) -> None:
        hyperparameters = {**best.params, "trial": best.number}
        async with self.db.uow() as uow:
            if not await uow.claim(consumer, event):
                return
            uow.session.add(
                run_row(
                    event,
                    run_id,
                    "completed",
                    base_model_sha256=base.sha256,
                    adapter_sha256=adapter.sha256,
                    adapter=adapter.model_dump_json(),
                    report=report.model_dump_json(),
                    hyperparameters=json.dumps(hyperparameters, sort_keys=True),
                    validation_loss=best.validation_loss,
                    best_trial=best.number,
                )
            )
            await uow.publish(
                event.caused(
                    TrainingCompleted,
                    producer=NAME,
                    event_id=uuid.uuid5(run_id, "completed"),
                    run_id=run_id,
                    task_name=event.task_name,
                    task_version=event.task_version,
                    task_spec=event.task_spec,
                    iteration=event.iteration,
                    dataset_version=event.dataset_version,
                    base_model=base,
                    adapter=adapter,
                    report=report,
                    hyperparameters=hyperparameters,
                    validation_loss=best.validation_loss,
                )
            )
            await uow.commit()
        log.info("training completed", run_id=str(run_id), adapter=adapter.sha256[:12])

    async def _fail(
        self, event: DatasetPublished, run_id: uuid.UUID, consumer: str, reason: str
    ) -> None:
        async with self.db.uow() as uow:
            if not await uow.claim(consumer, event):
                return
            uow.session.add(run_row(event, run_id, "failed", reason=reason))
            await uow.publish(
                event.caused(
                    CycleFailed,
                    producer=NAME,
                    event_id=uuid.uuid5(run_id, "failed"),
                    task_name=event.task_name,
                    stage="training",
                    reason=reason[:4000],
                )
            )
            await uow.commit()
        log.error("training failed", run_id=str(run_id), reason=reason[:500])


def run_row(event: DatasetPublished, run_id: uuid.UUID, status: str, **fields: Any) -> TrainerRun:
    return TrainerRun(
        run_id=str(run_id),
        event_id=str(event.event_id),
        cycle_id=str(event.cycle_id) if event.cycle_id else None,
        task_name=event.task_name,
        task_version=event.task_version,
        dataset_version=event.dataset_version,
        status=status,
        finished_at=datetime.now(UTC),
        **fields,
    )


__all__ = ["NAME", "Trainer", "run_row"]
