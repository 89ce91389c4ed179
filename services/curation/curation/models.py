"""Tables the curation service owns (prefixed with its name).

A curation run is one `curation_runs` row per source event (a synth batch today; a feedback set
later), whatever its outcome. Its draft (kept rows, rejections, review picks) lives in the
artifact store; the database keeps what people query: review items, rejections, datasets.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.tables import Base, BigIntId
from shared.events.base import ArtifactRef


class CurationRun(Base):
    __tablename__ = "curation_runs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    source_event_id: Mapped[str] = mapped_column(String(36), unique=True)
    source_kind: Mapped[str] = mapped_column(String(20))  # "synth"; "feedback" later
    # The source event itself, so whoever publishes later (the review CLI) answers it properly.
    source_event: Mapped[str] = mapped_column(Text)
    cycle_id: Mapped[str] = mapped_column(String(36), index=True)
    task_name: Mapped[str] = mapped_column(String(64), index=True)
    task_version: Mapped[int] = mapped_column(Integer)
    iteration: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))  # pending_review | published | failed
    draft_uri: Mapped[str] = mapped_column(String(1000))
    draft_sha256: Mapped[str] = mapped_column(String(64))
    draft_size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def draft_ref(self) -> ArtifactRef:
        return ArtifactRef(
            uri=self.draft_uri,
            sha256=self.draft_sha256,
            size_bytes=self.draft_size_bytes,
            media_type="application/json",
        )


class CurationReview(Base):
    """A kept row an expert must approve, edit or reject before its dataset is published."""

    __tablename__ = "curation_reviews"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("curation_runs.id"), index=True)
    row_id: Mapped[str] = mapped_column(String(100))
    use_case: Mapped[str] = mapped_column(String(64))
    negative: Mapped[bool] = mapped_column()
    input: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending|approved|edited|rejected
    edited_output: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("run_id", "row_id", name="uq_curation_reviews_run_row"),)


class CurationRejection(Base):
    __tablename__ = "curation_rejections"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("curation_runs.id"))
    # Filled in when the run's dataset is published; null while in review or when it failed.
    dataset_version: Mapped[str | None] = mapped_column(String(64), index=True)
    row_id: Mapped[str] = mapped_column(String(100))
    use_case: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_curation_rejections_run_reason", "run_id", "reason"),)


class CurationDataset(Base):
    """A published dataset version; the manifest in the artifact store holds the rest."""

    __tablename__ = "curation_datasets"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("curation_runs.id"), unique=True)
    dataset_version: Mapped[str] = mapped_column(String(64), index=True)
    cycle_id: Mapped[str] = mapped_column(String(36), index=True)
    task_name: Mapped[str] = mapped_column(String(64), index=True)
    task_version: Mapped[int] = mapped_column(Integer)
    iteration: Mapped[int] = mapped_column(Integer)
    manifest_uri: Mapped[str] = mapped_column(String(1000))
    manifest_size_bytes: Mapped[int] = mapped_column(BigInteger)
    train_examples: Mapped[int] = mapped_column(Integer)
    validation_examples: Mapped[int] = mapped_column(Integer)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def manifest_ref(self) -> ArtifactRef:
        return ArtifactRef(
            uri=self.manifest_uri,
            sha256=self.dataset_version,
            size_bytes=self.manifest_size_bytes,
            media_type="application/vnd.distillery.dataset+json",
        )
