"""Outbox relay: moves committed events from the outbox table onto JetStream.

Rows are claimed with a lease, published, then marked sent. A relay that dies after publishing
and before marking leaves its lease to expire; another relay (or the same one restarted) sends
the rows again with the same Nats-Msg-Id, which JetStream drops inside its duplicate window.
Several relays may run at once: on PostgreSQL the claim skips rows another relay has locked,
on SQLite writers are serialised by BEGIN IMMEDIATE.

A pass costs two short transactions whatever its size (claim; mark sent in one UPDATE) and one
broker round trip: the batch is written to the connection at once and the PubAcks are awaited
together (`PipelinedPublisher`).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from nats.js import JetStreamContext
from sqlalchemy import bindparam, or_, select, update

from shared.bus import JetStreamPublisher
from shared.bus.broker import MSG_ID_HEADER
from shared.db import Database, OutboxRow
from shared.events import STREAM_NAME
from shared.logs import get_logger
from shared.metrics import RELAYED

log = get_logger(__name__)


class Publisher(Protocol):
    async def publish(self, subject: str, payload: bytes, event_id: str) -> None: ...


class BatchPublisher(Protocol):
    async def publish_batch(
        self, messages: Sequence[tuple[str, bytes, str]]
    ) -> list[BaseException | None]:
        """Publish (subject, payload, event_id) messages; the error of each, None if stored."""
        ...


class PipelinedPublisher:
    """Publishes a batch with JetStream async publish: every message is written before any
    PubAck is awaited, then all acks are awaited under one deadline.

    The relay's earlier gather over `broker.publish` also overlapped the round trips, but
    paid FastStream's per-call publish machinery and a request future each; this writes
    plain nats-py publishes with a reply subject and collects the acks.
    """

    def __init__(self, publisher: JetStreamPublisher) -> None:
        self.publisher = publisher
        self._js: tuple[object, JetStreamContext] | None = None

    async def publish(self, subject: str, payload: bytes, event_id: str) -> None:
        [error] = await self.publish_batch([(subject, payload, event_id)])
        if error is not None:
            raise error

    async def publish_batch(
        self, messages: Sequence[tuple[str, bytes, str]]
    ) -> list[BaseException | None]:
        js = await self._context()
        pending: list[asyncio.Future | BaseException] = []
        for subject, payload, event_id in messages:
            headers = {MSG_ID_HEADER: event_id, "content-type": "application/json"}
            try:
                pending.append(
                    await js.publish_async(subject, payload, headers=headers, stream=STREAM_NAME)
                )
            except Exception as exc:  # e.g. connection closed: this message was not written
                pending.append(exc)
        futures = [p for p in pending if isinstance(p, asyncio.Future)]
        if futures:
            _, late = await asyncio.wait(futures, timeout=self.publisher.timeout_s)
            for future in late:
                future.cancel()  # frees nats-py's slot; the row is retried after its lease
        return [_error_of(p) for p in pending]

    async def _context(self) -> JetStreamContext:
        # One context per connection: it owns the reply subscription the PubAcks arrive on.
        connection = await self.publisher.broker.connect()
        if self._js is None or self._js[0] is not connection:
            self._js = (connection, connection.jetstream())
        return self._js[1]


def _error_of(pending: asyncio.Future | BaseException) -> BaseException | None:
    if isinstance(pending, BaseException):
        return pending
    if pending.cancelled():
        return TimeoutError("no PubAck within the publish timeout")
    return pending.exception()


class _Concurrent:
    """Any plain `Publisher` as a BatchPublisher: its publishes run concurrently."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def publish_batch(
        self, messages: Sequence[tuple[str, bytes, str]]
    ) -> list[BaseException | None]:
        results = await asyncio.gather(
            *(self.publisher.publish(*m) for m in messages), return_exceptions=True
        )
        return [r if isinstance(r, BaseException) else None for r in results]


def batch_publisher(publisher: Publisher | BatchPublisher) -> BatchPublisher:
    if hasattr(publisher, "publish_batch"):
        return publisher  # type: ignore[return-value]
    if isinstance(publisher, JetStreamPublisher):
        return PipelinedPublisher(publisher)
    return _Concurrent(publisher)  # type: ignore[arg-type]


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
        publisher: Publisher | BatchPublisher,
        *,
        producer: str | None = None,
        batch_size: int = 200,
        lease_s: float = 30.0,
        poll_interval_s: float = 0.5,
        retry_after_s: float = 2.0,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.publisher = batch_publisher(publisher)
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
        errors = await self.publisher.publish_batch(
            [(r.subject, r.payload.encode(), r.event_id) for r in rows]
        )
        sent = [r.id for r, err in zip(rows, errors, strict=True) if err is None]
        failed = [(r, err) for r, err in zip(rows, errors, strict=True) if err is not None]
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
        table = OutboxRow.__table__
        stmt = (
            update(table)
            .where(table.c.id == bindparam("row_id"), table.c.claimed_by == self.name)
            .values(claimed_until=retry_at, last_error=bindparam("error"))
        )
        async with self.db.uow() as uow:
            # One executemany: a broker outage fails whole batches, one statement each.
            await uow.session.execute(
                stmt, [{"row_id": row.id, "error": repr(exc)[:2000]} for row, exc in failed]
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
