"""Control-plane registries: applied task specs and imported base models.

Both hold only references: the bytes live in the artifact store, addressed by sha256.
Rows are never updated; a re-apply with changes is a new version.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.tables import Base, BigIntId
from shared.events.base import ArtifactRef


class _RefColumns:
    uri: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))

    def ref(self) -> ArtifactRef:
        return ArtifactRef(
            uri=self.uri, sha256=self.sha256, size_bytes=self.size_bytes, media_type=self.media_type
        )


class TaskSpecRow(_RefColumns, Base):
    __tablename__ = "task_specs"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("name", "version", name="uq_task_specs_name_version"),)


class BaseModelRow(_RefColumns, Base):
    """A base model imported as safetensors; `ref()` is its manifest in the artifact store."""

    __tablename__ = "base_models"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    source: Mapped[str] = mapped_column(String(1000))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("name", "sha256", name="uq_base_models_name_sha256"),)
