"""Outbox relay: moves committed events from the outbox table onto JetStream.

Rows are claimed with a lease, published, then marked sent. A relay that dies after publishing
and before marking leaves its lease to expire; another relay (or the same one restarted) sends
the rows again with the same Nats-Msg-Id, which JetStream drops inside its duplicate window.
Several relays may run at once: on PostgreSQL the claim skips rows another relay has locked,
on SQLite writers are serialised by BEGIN IMMEDIATE.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import or_, select, update

from shared.db import Database, OutboxRow
from shared.logs import get_logger
from shared.metrics import RELAYED

log = get_logger(__name__)


class Publisher(Protocol):
    async def publish(self, subject: str, payload: bytes, event_id: str) -> None: ...


@dataclass(frozen=True)
class Claimed:
    id: int
    event_id: str
    subject: str
    payload: str


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        *,
        producer: str | None = None,
        batch_size: int = 200,
        lease_s: float = 30.0,
        poll_interval_s: float = 0.5,
        retry_after_s: float = 2.0,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.producer = producer
        self.batch_size = batch_size
        self.lease = timedelta(seconds=lease_s)
        self.poll_interval_s = poll_interval_s
        self.retry_after = timedelta(seconds=retry_after_s)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; database and broker outages are waited out."""
        while not stop.is_set():
            self.db.outbox_signal.clear()
            try:
                sent = await self.drain_once()
            except Exception as exc:  # the loop must outlive outages; the cause is logged
                log.warning("outbox relay pass failed", error=repr(exc), relay=self.name)
                sent = 0
                await _wait_any(stop, None, self.retry_after.total_seconds())
                continue
            if sent < self.batch_size:
                await _wait_any(stop, self.db.outbox_signal, self.poll_interval_s)

    async def drain(self) -> int:
        """Relay everything relayable now; for short-lived tools such as the CLI."""
        total = 0
        while sent := await self.drain_once():
            total += sent
        return total

    async def drain_once(self) -> int:
        rows = await self._claim()
        if not rows:
            return 0
        results = await asyncio.gather(
            *(self.publisher.publish(r.subject, r.payload.encode(), r.event_id) for r in rows),
            return_exceptions=True,
        )
        sent = [
            r.id for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)
        ]
        failed = [
            (r, res) for r, res in zip(rows, results, strict=True) if isinstance(res, BaseException)
        ]
        await self._mark_sent(sent)
        RELAYED.inc(len(sent))
        if failed:
            await self._release(failed)
        return len(sent)

    async def _claim(self) -> list[Claimed]:
        now = datetime.now(UTC)
        candidates = (
            select(OutboxRow.id)
            .where(
                OutboxRow.sent_at.is_(None),
                or_(OutboxRow.claimed_until.is_(None), OutboxRow.claimed_until < now),
            )
            .order_by(OutboxRow.id)
            .limit(self.batch_size)
        )
        if self.producer:
            candidates = candidates.where(OutboxRow.producer == self.producer)
        if self.db.dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        stmt = (
            update(OutboxRow)
            .where(OutboxRow.id.in_(candidates.scalar_subquery()))
            .values(
                claimed_by=self.name,
                claimed_until=now + self.lease,
                attempts=OutboxRow.attempts + 1,
            )
            .returning(OutboxRow.id, OutboxRow.event_id, OutboxRow.subject, OutboxRow.payload)
        )
        async with self.db.uow() as uow:
            rows = [Claimed(*r) for r in (await uow.session.execute(stmt)).all()]
            await uow.commit()
        return sorted(rows, key=lambda r: r.id)

    async def _mark_sent(self, ids: list[int]) -> None:
        if not ids:
            return
        async with self.db.uow() as uow:
            await uow.session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(ids), OutboxRow.claimed_by == self.name)
                .values(sent_at=datetime.now(UTC), claimed_until=None, last_error=None)
            )
            await uow.commit()

    async def _release(self, failed: list[tuple[Claimed, BaseException]]) -> None:
        # Keep the lease, shortened, so a broker outage is not hammered by every relay at once.
        retry_at = datetime.now(UTC) + self.retry_after
        async with self.db.uow() as uow:
            for row, exc in failed:
                await uow.session.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == row.id, OutboxRow.claimed_by == self.name)
                    .values(claimed_until=retry_at, last_error=repr(exc)[:2000])
                )
            await uow.commit()
        log.warning("outbox publish failed", count=len(failed), error=repr(failed[0][1]))


async def _wait_any(stop: asyncio.Event, signal: asyncio.Event | None, wait_s: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if signal is not None:
        waiters.append(asyncio.ensure_future(signal.wait()))
    try:
        await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
