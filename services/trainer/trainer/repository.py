"""Every read and write of the trainer's tables (trainer_runs, trainer_trials)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from shared.db import Database, UnitOfWork
from shared.events.catalog import DatasetPublished

from .models import TrainerRun, TrainerTrial


def add_run(
    uow: UnitOfWork, event: DatasetPublished, run_id: uuid.UUID, status: str, **fields: Any
) -> None:
    """The run's one row, in the caller's transaction (the template's, with the claim)."""
    uow.session.add(
        TrainerRun(
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
    )


async def upsert_trial(db: Database, run_id: uuid.UUID, number: int, **fields: Any) -> None:
    """Committed at once, while the run trains: it is what a resumed run reads back."""
    async with db.uow() as uow:
        row = await uow.session.scalar(
            select(TrainerTrial).where(
                TrainerTrial.run_id == str(run_id), TrainerTrial.number == number
            )
        )
        if row is None:
            row = TrainerTrial(run_id=str(run_id), number=number, state="running", params="{}")
            uow.session.add(row)
        for key, value in fields.items():
            setattr(row, key, value)
        row.updated_at = datetime.now(UTC)
        await uow.commit()


@dataclass(frozen=True)
class StoredTrial:
    number: int
    state: str
    params: str
    record: str | None
    adapter: str | None
    checkpoint: str | None
    checkpoint_step: int | None


async def trials_of(db: Database, run_id: uuid.UUID) -> list[StoredTrial]:
    async with db.uow() as uow:
        result = await uow.session.scalars(
            select(TrainerTrial)
            .where(TrainerTrial.run_id == str(run_id))
            .order_by(TrainerTrial.number)
        )
        # Plain values: the unit of work expires its rows when it closes.
        return [
            StoredTrial(**{k: getattr(r, k) for k in StoredTrial.__dataclass_fields__})
            for r in result
        ]
