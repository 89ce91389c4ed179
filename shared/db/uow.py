"""Unit of work: one transaction, rolled back on exit unless `commit()` was called.

The inbox marker, the effect and the outbox rows share that transaction, which is what makes
an at-least-once delivery have exactly one effect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Self, TypeVar

from sqlalchemy.dialects import postgresql, sqlite

from shared.events import Event

from .tables import InboxRow, OutboxRow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

E = TypeVar("E", bound=Event)
INBOX = InboxRow.__table__
OUTBOX = OutboxRow.__table__


def _insert(dialect: str):
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


# The statements are built once per dialect and executed with parameters: building and
# cache-keying an INSERT for every message was a visible share of the per-message CPU time.
# They target the Core tables, not the mapped classes, so the ORM's bulk-insert machinery
# stays out of the hot path.
@cache
def _claim_stmt(dialect: str):
    return _insert(dialect)(INBOX).on_conflict_do_nothing()


@cache
def _claim_many_stmt(dialect: str):
    return _claim_stmt(dialect).returning(INBOX.c.event_id)


@cache
def _outbox_stmt(dialect: str):
    return _insert(dialect)(OUTBOX).on_conflict_do_nothing(index_elements=["event_id"])


def outbox_values(event: Event) -> dict:
    return {
        "event_id": str(event.event_id),
        "subject": event.subject,
        "producer": event.producer,
        "cycle_id": str(event.cycle_id) if event.cycle_id else None,
        "causation_id": str(event.causation_id) if event.causation_id else None,
        "occurred_at": event.occurred_at,
        "payload": event.model_dump_json(),
        "attempts": 0,
    }


def _inbox_values(consumer: str, event: Event, now: datetime) -> dict:
    return {
        "consumer": consumer,
        "event_id": str(event.event_id),
        "subject": event.subject,
        "cycle_id": str(event.cycle_id) if event.cycle_id else None,
        "processed_at": now,
    }


def by_id(events: Sequence[E]) -> dict[str, E]:
    """Each event once, by event id (the first copy wins), in order."""
    unique: dict[str, E] = {}
    for event in events:
        unique.setdefault(str(event.event_id), event)
    return unique


class UnitOfWork:
    session: AsyncSession

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], signal: asyncio.Event, dialect: str
    ) -> None:
        self._sessions = sessions
        self._signal = signal
        self._dialect = dialect
        self._published = 0

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Rolling back after a commit is a no-op; without one it discards everything.
        await self.session.rollback()
        await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()
        if self._published:
            self._published = 0
            self._signal.set()

    async def claim(self, consumer: str, event: Event) -> bool:
        """Record that `consumer` applies `event`; False if it already did.

        On PostgreSQL a concurrent claim of the same event waits for the first transaction and
        then finds the row, so only one of two racing deliveries proceeds.
        """
        values = _inbox_values(consumer, event, datetime.now(UTC))
        result = await self.session.execute(_claim_stmt(self._dialect), values)
        return result.rowcount == 1

    async def claim_many(self, consumer: str, events: Sequence[E]) -> list[E]:
        """Claim every event in one statement; returns those not applied before, in order.

        The same guarantee as `claim` for each event. An event_id given twice is claimed once.
        """
        unique = by_id(events)
        if not unique:
            return []
        now = datetime.now(UTC)
        rows = [_inbox_values(consumer, e, now) for e in unique.values()]
        # One multi-row INSERT .. ON CONFLICT DO NOTHING RETURNING (SQLAlchemy's
        # "insertmanyvalues"): a round trip per batch instead of per event. RETURNING yields
        # only the rows this statement inserted, i.e. the events nobody had claimed.
        result = await self.session.execute(_claim_many_stmt(self._dialect), rows)
        claimed = set(result.scalars().all())
        return [e for key, e in unique.items() if key in claimed]

    async def publish(self, *events: Event) -> None:
        """Stage events in the outbox; they leave only if this transaction commits.

        An event_id already in the outbox is skipped, so re-staging after a retry is harmless.
        """
        if not events:
            return
        # One executemany (pipelined by asyncpg, one call into SQLite) instead of a round trip
        # per event.
        await self.session.execute(_outbox_stmt(self._dialect), [outbox_values(e) for e in events])
        self._published += len(events)
