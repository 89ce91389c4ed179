"""What the service does with the worker's messages while a run trains.

- step: a `training.progressed` event through the outbox, throttled (first and last step of a
  trial, otherwise at most one per `progress_interval_s`);
- trial_started / trial: the trainer_trials row, and a finished trial's adapter in the store;
- checkpoint: the checkpoint folder copied to the artifact store and recorded on the trial row,
  so a run restarted on another machine resumes from it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.artifacts import AsyncArtifactStore
from shared.db import Database
from shared.events.catalog import DatasetPublished, TrainingProgressed
from shared.logs import get_logger
from shared.models import store_model_dir

from .domain import ProgressThrottle, TrialRecord, progress_event_id
from .repository import upsert_trial
from .settings import NAME

log = get_logger(NAME)


@dataclass
class RunProgress:
    db: Database
    artifacts: AsyncArtifactStore
    source: DatasetPublished
    run_id: uuid.UUID
    base_model_sha256: str
    throttle: ProgressThrottle
    published: int = 0
    _seen_trials: set[int] = field(default_factory=set)

    async def __call__(self, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind == "step":
            await self._step(message)
        elif kind == "trial_started":
            await upsert_trial(
                self.db,
                self.run_id,
                message["trial"],
                state="running",
                params=json.dumps(message["params"], sort_keys=True),
            )
        elif kind == "checkpoint":
            await self._checkpoint(message)
        elif kind == "trial":
            await self._trial(message)
        elif kind == "replay":
            log.info("replay rows", **{k: v for k, v in message.items() if k != "kind"})

    async def _step(self, m: dict[str, Any]) -> None:
        first = m["trial"] not in self._seen_trials
        self._seen_trials.add(m["trial"])
        if not self.throttle.should_publish(m["step"], m["total_steps"], time.monotonic(), first):
            return
        event = self.source.caused(
            TrainingProgressed,
            producer=NAME,
            event_id=progress_event_id(self.run_id, m["trial"], m["step"]),
            run_id=self.run_id,
            trial=m["trial"],
            step=m["step"],
            total_steps=m["total_steps"],
            loss=_finite(m.get("loss")),
            tokens_per_second=_finite(m.get("tokens_per_second")),
            eta_seconds=_finite(m.get("eta_seconds")),
        )
        async with self.db.uow() as uow:
            await uow.publish(event)
            await uow.commit()
        self.published += 1

    async def _store_dir(self, path: Path, name: str, extra: dict[str, Any]) -> str | None:
        try:
            ref = await asyncio.to_thread(
                store_model_dir,
                self.artifacts.sync,
                path,
                name,
                kind="adapter",
                base_model=self.base_model_sha256,
                extra={"run_id": str(self.run_id), **extra},
            )
        except FileNotFoundError:
            # The worker rotated this checkpoint away while we copied it; a newer one follows.
            log.warning("checkpoint vanished before upload", path=str(path))
            return None
        return ref.model_dump_json()

    async def _checkpoint(self, m: dict[str, Any]) -> None:
        name = f"{self.source.task_name}/run-{self.run_id}/trial-{m['trial']}/step-{m['step']}"
        ref = await self._store_dir(Path(m["path"]), name, {"checkpoint_step": m["step"]})
        if ref is not None:
            await upsert_trial(
                self.db, self.run_id, m["trial"], checkpoint_step=m["step"], checkpoint=ref
            )

    async def _trial(self, m: dict[str, Any]) -> None:
        record = TrialRecord.from_dict(m["record"])
        adapter = None
        if m.get("adapter"):
            name = f"{self.source.task_name}/run-{self.run_id}/trial-{record.number}"
            adapter = await self._store_dir(Path(m["adapter"]), name, {"trial": record.number})
        await upsert_trial(
            self.db,
            self.run_id,
            record.number,
            state=record.state,
            params=json.dumps(record.params, sort_keys=True),
            record=json.dumps(record.as_dict(), sort_keys=True),
            validation_loss=_finite(record.validation_loss),
            adapter=adapter,
        )
        log.info(
            "trial finished",
            trial=record.number,
            state=record.state,
            validation_loss=record.validation_loss,
        )


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None
