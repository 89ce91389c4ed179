"""Tables the synth_data service owns (prefixed with its name).

- synth_data_tasks: the task.registered events this service accepted (registrations.py). It
  is a record, not where specs are looked up: cycles resolve specs from the task registry
  (shared/tasks/tables.py `task_specs`), never from what the bus said.
- synth_data_responses: every teacher answer, keyed by the hash of its request. It is the
  response cache (a rerun costs nothing) and the token ledger (each row remembers the cycle
  that paid for it).
- synth_data_runs: one row per (cycle, iteration): progress while it runs, counts, cost and
  the artifacts when it is done. `distillery` tooling reads it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.tables import Base, BigIntId
from shared.events.base import ArtifactRef


class SynthTask(Base):
    __tablename__ = "synth_data_tasks"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("name", "version", name="uq_synth_data_tasks_name_version"),)

    def ref(self) -> ArtifactRef:
        return ArtifactRef(
            uri=self.uri, sha256=self.sha256, size_bytes=self.size_bytes, media_type=self.media_type
        )


class SynthResponse(Base):
    __tablename__ = "synth_data_responses"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(16))  # input | output | repair
    content: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    # The cycle whose request paid for this answer; later hits are free.
    cycle_id: Mapped[str] = mapped_column(String(36), index=True)
    iteration: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SynthRun(Base):
    __tablename__ = "synth_data_runs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    cycle_id: Mapped[str] = mapped_column(String(36))
    iteration: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str] = mapped_column(String(36))
    task_name: Mapped[str] = mapped_column(String(64), index=True)
    task_version: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # running | completed | failed
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    # This delivery's traffic: HTTP requests made, answers served from the cache, retries.
    requests: Mapped[int] = mapped_column(Integer, default=0)
    cache_hits: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    # What this cycle iteration paid the teacher, over every delivery (from the responses).
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    batch_uri: Mapped[str | None] = mapped_column(String(1000))
    batch_sha256: Mapped[str | None] = mapped_column(String(64))
    batch_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # The rejected examples, each with its reason (JSONL), for diagnosis and review.
    rejected_uri: Mapped[str | None] = mapped_column(String(1000))
    rejected_sha256: Mapped[str | None] = mapped_column(String(64))
    rejected_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    stats: Mapped[str | None] = mapped_column(Text)  # JSON: per slice, rejections by reason
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("cycle_id", "iteration", name="uq_synth_data_runs_cycle_iteration"),
    )

    def batch_ref(self) -> ArtifactRef | None:
        return _ref(self.batch_uri, self.batch_sha256, self.batch_size_bytes)

    def rejected_ref(self) -> ArtifactRef | None:
        return _ref(self.rejected_uri, self.rejected_sha256, self.rejected_size_bytes)


def _ref(uri: str | None, sha256: str | None, size: int | None) -> ArtifactRef | None:
    if uri is None or sha256 is None or size is None:
        return None
    return ArtifactRef(uri=uri, sha256=sha256, size_bytes=size, media_type="application/jsonl")
