"""Tables the quantizer service owns (prefixed with its name)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.tables import Base, BigIntId


class QuantizationRow(Base):
    """One passing adapter's quantization: the choice, or why the cycle ended here."""

    __tablename__ = "quantizer_runs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    source_event_id: Mapped[str] = mapped_column(String(36), unique=True)
    cycle_id: Mapped[str | None] = mapped_column(String(36), index=True)
    task_name: Mapped[str] = mapped_column(String(64))
    task_version: Mapped[int] = mapped_column(BigInteger)
    adapter_sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), doc="chosen | failed")
    chosen: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    merged_model: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="ArtifactRef")
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="ArtifactRef of report.json")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class VariantRow(Base):
    """One variant of a run, as judged on its own engine."""

    __tablename__ = "quantizer_variants"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("quantizer_runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    engine: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    artifact: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    quality: Mapped[float | None] = mapped_column(Float)
    retention: Mapped[float | None] = mapped_column(Float)
    p95_ms: Mapped[float | None] = mapped_column(Float)
    cost_per_query_usd: Mapped[float | None] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column(Boolean)
