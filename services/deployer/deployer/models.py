"""Tables the deployer owns (prefixed with its name)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.tables import Base, BigIntId


class DeploymentRow(Base):
    """One candidate's rollout: its recorded stage is where a restarted deployer resumes."""

    __tablename__ = "deployer_deployments"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(String(36), unique=True)
    source_event_id: Mapped[str] = mapped_column(String(36), unique=True)
    cycle_id: Mapped[str | None] = mapped_column(String(36), index=True)
    task_name: Mapped[str] = mapped_column(String(64), index=True)
    task_version: Mapped[int] = mapped_column(Integer)
    task_spec: Mapped[dict[str, Any]] = mapped_column(JSON, doc="ArtifactRef of the spec")
    candidate: Mapped[dict[str, Any]] = mapped_column(JSON, doc="ArtifactRef of what is served")
    candidate_kind: Mapped[str] = mapped_column(String(32), doc="adapter, llama.cpp, vllm, ...")
    variant: Mapped[str | None] = mapped_column(String(128), doc="the quantizer's variant name")
    measured: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, doc="ArtifactRef of the quantizer's report: the replies serving must reproduce"
    )
    # Where the candidate is served (set once its server answers): what routes point at.
    engine: Mapped[str | None] = mapped_column(String(16), doc="openai | vllm | llama.cpp")
    base_url: Mapped[str | None] = mapped_column(String(2048))
    served_model: Mapped[str | None] = mapped_column(String(256))
    stage: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(Integer, default=0)
    share: Mapped[float] = mapped_column(Float, default=0.0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text)
    # Bumped on every change; a writer that read an older one lost a race (an operator's
    # command against the automatic step) and must re-read rather than overwrite.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKeyRow(Base):
    """A gateway key: its SHA-256 only, never the secret (see keys.py for why not argon2)."""

    __tablename__ = "deployer_api_keys"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tasks: Mapped[list[str]] = mapped_column(JSON)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
