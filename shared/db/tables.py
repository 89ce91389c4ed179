"""Kernel tables: the transactional outbox and the consumers' inbox.

Services declare their own tables on the same `Base` (prefixed with the service name) so that
Alembic keeps one history for every table.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations diff and downgrade the same way on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class OutboxRow(Base):
    """An event committed with the state change that caused it, waiting to be relayed."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    subject: Mapped[str] = mapped_column(String(200))
    producer: Mapped[str] = mapped_column(String(64))
    cycle_id: Mapped[str | None] = mapped_column(String(36), index=True)
    causation_id: Mapped[str | None] = mapped_column(String(36))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    payload: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # The relay's hot query only ever looks at unsent rows.
        Index(
            "ix_outbox_unsent",
            "producer",
            "id",
            postgresql_where=sent_at.is_(None),
            sqlite_where=sent_at.is_(None),
        ),
    )


class InboxRow(Base):
    """`consumer` has applied `event_id`; written in the same transaction as the effect."""

    __tablename__ = "inbox"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200))
    cycle_id: Mapped[str | None] = mapped_column(String(36), index=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
