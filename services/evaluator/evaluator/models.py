"""Tables the evaluator service owns (prefixed with its name)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.tables import Base, BigIntId
from shared.events.base import ArtifactRef


class _Ref:
    uri: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))

    def ref(self) -> ArtifactRef:
        return ArtifactRef(
            uri=self.uri, sha256=self.sha256, size_bytes=self.size_bytes, media_type=self.media_type
        )


class EvaluationRow(Base):
    """One verdict on a candidate, written with the events it caused."""

    __tablename__ = "evaluator_evaluations"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    evaluation_id: Mapped[str] = mapped_column(String(36), unique=True)
    source_event_id: Mapped[str] = mapped_column(String(36), unique=True)
    cycle_id: Mapped[str | None] = mapped_column(String(36), index=True)
    task_name: Mapped[str] = mapped_column(String(64))
    task_version: Mapped[int] = mapped_column(Integer)
    iteration: Mapped[int] = mapped_column(Integer)
    candidate_sha256: Mapped[str] = mapped_column(String(64), index=True)
    candidate_kind: Mapped[str] = mapped_column(String(16))
    quant_format: Mapped[str | None] = mapped_column(String(16))
    golden_sha256: Mapped[str] = mapped_column(String(64))
    passed: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(16))
    quality: Mapped[float] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    failing_slices: Mapped[list[str]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON, doc="ArtifactRef of report.json")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ResultRow(_Ref, Base):
    """A model's raw outputs on a golden set, reused while model, set and setup are unchanged.

    `ref()` is a JSON artifact of predictions, latencies, probe replies and perplexity.
    """

    __tablename__ = "evaluator_results"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    model_key: Mapped[str] = mapped_column(String(64))
    golden_sha256: Mapped[str] = mapped_column(String(64))
    setup_sha256: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint(
            "model_key", "golden_sha256", "setup_sha256", name="uq_evaluator_results_key"
        ),
    )


class TeacherCacheRow(Base):
    """One teacher answer, keyed by the sha256 of the exact request that produced it."""

    __tablename__ = "evaluator_teacher_cache"

    request_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
