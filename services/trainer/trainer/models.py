"""Tables the trainer service owns (prefixed with its name).

trainer_runs has one row per finished run (completed or failed), written in the same
transaction as the inbox claim and the answering event. trainer_trials has one row per
hyper-parameter trial, kept current while the run trains: it is how a run resumed on another
machine finds finished trials and the last checkpoint in the artifact store.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.tables import Base, BigIntId


class TrainerRun(Base):
    __tablename__ = "trainer_runs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36), unique=True)
    event_id: Mapped[str] = mapped_column(String(36))
    cycle_id: Mapped[str | None] = mapped_column(String(36), index=True)
    task_name: Mapped[str] = mapped_column(String(64))
    task_version: Mapped[int] = mapped_column(Integer)
    dataset_version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # completed | failed
    reason: Mapped[str | None] = mapped_column(Text)
    base_model_sha256: Mapped[str | None] = mapped_column(String(64))
    adapter_sha256: Mapped[str | None] = mapped_column(String(64))
    adapter: Mapped[str | None] = mapped_column(Text)  # ArtifactRef JSON
    report: Mapped[str | None] = mapped_column(Text)  # ArtifactRef JSON
    hyperparameters: Mapped[str | None] = mapped_column(Text)  # JSON
    validation_loss: Mapped[float | None] = mapped_column(Float)
    best_trial: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TrainerTrial(Base):
    __tablename__ = "trainer_trials"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # running | complete | pruned | failed
    params: Mapped[str] = mapped_column(Text)  # JSON
    record: Mapped[str | None] = mapped_column(Text)  # JSON TrialRecord, once finished
    validation_loss: Mapped[float | None] = mapped_column(Float)
    checkpoint_step: Mapped[int | None] = mapped_column(Integer)
    checkpoint: Mapped[str | None] = mapped_column(Text)  # ArtifactRef JSON
    adapter: Mapped[str | None] = mapped_column(Text)  # ArtifactRef JSON
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("run_id", "number", name="uq_trainer_trials_run_number"),)
