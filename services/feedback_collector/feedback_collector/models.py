"""Tables the feedback-collector owns (prefixed with its name)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.tables import Base, BigIntId


class TraceRow(Base):
    """One production request as an arm answered it (a shadow call shares the request id)."""

    __tablename__ = "feedback_collector_traces"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    request_id: Mapped[str] = mapped_column(String(36), index=True)
    task_name: Mapped[str] = mapped_column(String(64))
    deployment_id: Mapped[str | None] = mapped_column(String(36))
    arm: Mapped[str] = mapped_column(String(16), doc="the route: student, teacher or shadow")
    model_version: Mapped[str | None] = mapped_column(String(128))
    stage: Mapped[str | None] = mapped_column(String(16), doc="rollout stage when it answered")
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    completion: Mapped[str] = mapped_column(Text)
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    prompt_source: Mapped[str | None] = mapped_column(String(8))
    error: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # Metrics read a task's recent window; retention deletes by age.
        Index("ix_feedback_collector_traces_task_time", "task_name", "occurred_at"),
        Index("ix_feedback_collector_traces_occurred_at", "occurred_at"),
    )


class FeedbackRow(Base):
    """A verdict on a request. Stored whether or not its trace has arrived: `matched_at` is
    null while the trace is missing (pending), set when it is there."""

    __tablename__ = "feedback_collector_feedback"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    request_id: Mapped[str] = mapped_column(String(36), index=True)
    task_name: Mapped[str] = mapped_column(String(64), index=True)
    rating: Mapped[int | None] = mapped_column(Integer)
    correction: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    escalate: Mapped[bool] = mapped_column(Boolean)
    user_id: Mapped[str | None] = mapped_column(String(128))
    key_id: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    matched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    # When a build turned it into an example or a rejection; null: not looked at yet.
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RolloutRow(Base):
    """The latest rollout stage per deployment, to fill in traces that do not carry one."""

    __tablename__ = "feedback_collector_rollouts"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(36), unique=True)
    task_name: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(16))
    model_sha256: Mapped[str] = mapped_column(String(64))
    traffic_share: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReferenceRow(Base):
    """Input drift's reference per task: the training split of its latest published dataset."""

    __tablename__ = "feedback_collector_references"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    task_name: Mapped[str] = mapped_column(String(64), unique=True)
    dataset_version: Mapped[str] = mapped_column(String(128))
    train: Mapped[dict[str, Any]] = mapped_column(JSON, doc="the train split's ArtifactRef")
    task_spec: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, nullable=True, doc="the spec that dataset applied (ArtifactRef): its monitoring"
    )
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ExampleRow(Base):
    """A training candidate made from production: scrubbed, with lineage to its traces."""

    __tablename__ = "feedback_collector_examples"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    example_id: Mapped[str] = mapped_column(String(64), unique=True, doc="sha256 of the content")
    task_name: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16), doc="sft or preference")
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, doc="the scrubbed input")
    chosen: Mapped[str] = mapped_column(Text, doc="the scrubbed output to learn")
    rejected: Mapped[str | None] = mapped_column(Text, doc="preference: the answer it beat")
    trust: Mapped[str] = mapped_column(String(16), doc="users or teacher: why it is trusted")
    request_ids: Mapped[list[str]] = mapped_column(JSON, doc="lineage: the traces it came from")
    feedback_ids: Mapped[list[str]] = mapped_column(JSON, doc="lineage: the feedback events")
    pii: Mapped[dict[str, int]] = mapped_column(JSON, doc="placeholders put in, by kind")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RejectionRow(Base):
    """A contribution that did not become training data, and why (poisoning guards, expiry)."""

    __tablename__ = "feedback_collector_rejections"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    feedback_event_id: Mapped[str] = mapped_column(String(36), unique=True)
    request_id: Mapped[str] = mapped_column(String(36))
    task_name: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(128))
    key_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RelabelRow(Base):
    """An input rated negative with no correction: asked of the teacher once (through
    synth-data), answered by `relabel.completed`."""

    __tablename__ = "feedback_collector_relabels"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(36), unique=True)
    task_name: Mapped[str] = mapped_column(String(64), index=True)
    input: Mapped[str] = mapped_column(Text, doc="the last user message, scrubbed")
    feedback_ids: Mapped[list[str]] = mapped_column(JSON, doc="lineage: the ratings behind it")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    asked_by: Mapped[str | None] = mapped_column(String(36), doc="the relabel.requested id")
    asked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0, doc="times it was asked")
    answer: Mapped[str | None] = mapped_column(Text, doc="the teacher's answer")
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CycleRow(Base):
    """A cycle this service asked for. `trigger` is unique: the same alarm (or schedule slot)
    seen again, however often, finds its row and starts nothing."""

    __tablename__ = "feedback_collector_cycles"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    cycle_id: Mapped[str] = mapped_column(String(36), unique=True)
    task_name: Mapped[str] = mapped_column(String(64), index=True)
    trigger: Mapped[str] = mapped_column(String(200), unique=True)
    reason: Mapped[str] = mapped_column(String(16), doc="drift, schedule or feedback")
    detail: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    examples_upto: Mapped[int] = mapped_column(
        BigIntId,
        server_default="0",
        doc="the newest trusted example id the cycle's dataset included",
    )
