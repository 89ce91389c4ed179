"""Unit of work: one transaction, rolled back on exit unless `commit()` was called.

The inbox marker, the effect and the outbox rows share that transaction, which is what makes
an at-least-once delivery have exactly one effect.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Self

from sqlalchemy.dialects import postgresql, sqlite

from shared.events import Event

from .tables import InboxRow, OutboxRow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


def _insert(dialect: str):
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


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
        stmt = (
            _insert(self._dialect)(InboxRow)
            .values(
                consumer=consumer,
                event_id=str(event.event_id),
                subject=event.subject,
                cycle_id=str(event.cycle_id) if event.cycle_id else None,
                processed_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing()
        )
        result = await self.session.execute(stmt)
        return result.rowcount == 1

    async def publish(self, *events: Event) -> None:
        """Stage events in the outbox; they leave only if this transaction commits.

        An event_id already in the outbox is skipped, so re-staging after a retry is harmless.
        """
        for event in events:
            stmt = (
                _insert(self._dialect)(OutboxRow)
                .values(**outbox_values(event))
                .on_conflict_do_nothing(index_elements=["event_id"])
            )
            await self.session.execute(stmt)
        self._published += len(events)
