"""Reads the event history back from the outbox (what was emitted) and inbox (who applied it).

Every event of the platform passes through some service's outbox, so together the two tables
are a timeline of the whole system without reading the stream itself.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from sqlalchemy import select

from shared.db import Database, InboxRow, OutboxRow
from shared.events.catalog import DeadLettered

from .common import as_utc

_PREFIX = "distillery."
_IN_CHUNK = 500


@dataclass(frozen=True)
class DeadLetter:
    consumer: str
    error_kind: str
    reason: str
    original_event_id: str | None


@dataclass
class EventRow:
    id: int
    event_id: str
    subject: str
    producer: str
    cycle_id: str | None
    causation_id: str | None
    occurred_at: datetime
    sent_at: datetime | None
    attempts: int
    last_error: str | None
    payload: str
    consumers: list[str] = field(default_factory=list)
    dead_letter: DeadLetter | None = None  # set when this row is itself a dead-letter record

    @property
    def pending(self) -> bool:
        return self.sent_at is None

    @property
    def stage(self) -> str:
        """`distillery.cycle.requested.v1` → `cycle.requested`."""
        return self.subject.removeprefix(_PREFIX).rsplit(".v", 1)[0]

    def payload_value(self, name: str) -> object:
        try:
            return json.loads(self.payload).get(name)
        except (ValueError, AttributeError):
            return None


def _row(r: OutboxRow) -> EventRow:
    row = EventRow(
        id=r.id,
        event_id=r.event_id,
        subject=r.subject,
        producer=r.producer,
        cycle_id=r.cycle_id,
        causation_id=r.causation_id,
        occurred_at=as_utc(r.occurred_at),
        sent_at=as_utc(r.sent_at),
        attempts=r.attempts,
        last_error=r.last_error,
        payload=r.payload,
    )
    if r.subject == DeadLettered.subject:
        try:
            data = json.loads(r.payload)
            row.dead_letter = DeadLetter(
                consumer=str(data.get("consumer", "?")),
                error_kind=str(data.get("error_kind", "?")),
                reason=str(data.get("reason", "")),
                original_event_id=data.get("original_event_id"),
            )
        except ValueError:
            row.dead_letter = DeadLetter("?", "?", "unreadable dead-letter payload", None)
    return row


def subject_matcher(pattern: str) -> tuple[str, re.Pattern[str]]:
    """A NATS-style pattern (`*` one token, `>` the rest; `distillery.` optional).

    Returns a LIKE prefilter for the database and the exact regex applied after it.
    """
    if not pattern.startswith(_PREFIX) and pattern not in (">", "distillery"):
        pattern = _PREFIX + pattern
    tokens = pattern.split(".")
    regex_parts, like_parts = [], []
    for i, part in enumerate(tokens):
        if part == ">" and i == len(tokens) - 1:
            regex_parts.append(r".+")
            like_parts.append("%")
        elif part == "*":
            regex_parts.append(r"[^.]+")
            like_parts.append("%")
        else:
            regex_parts.append(re.escape(part))
            like_parts.append(part.replace("%", r"\%").replace("_", r"\_"))
    return ".".join(like_parts), re.compile(r"\.".join(regex_parts) + "$")


async def fetch_events(
    db: Database,
    *,
    limit: int | None = None,
    cycle_id: UUID | None = None,
    subject: str | None = None,
    after_id: int = 0,
) -> list[EventRow]:
    """Outbox rows, oldest first: the last `limit` matching, or all newer than `after_id`."""
    stmt = select(OutboxRow).where(OutboxRow.id > after_id)
    if cycle_id is not None:
        stmt = stmt.where(OutboxRow.cycle_id == str(cycle_id))
    regex = None
    if subject:
        like, regex = subject_matcher(subject)
        stmt = stmt.where(OutboxRow.subject.like(like, escape="\\"))
    newest_first = limit is not None
    stmt = stmt.order_by(OutboxRow.id.desc() if newest_first else OutboxRow.id)
    rows: list[EventRow] = []
    async with db.uow() as uow:
        result = await uow.session.stream_scalars(stmt)
        async for r in result:
            if regex is None or regex.match(r.subject):
                rows.append(_row(r))
                if limit is not None and len(rows) >= limit:
                    break
        await result.close()
    if newest_first:
        rows.reverse()
    await attach_consumers(db, rows)
    return rows


async def attach_consumers(db: Database, rows: list[EventRow]) -> None:
    by_event: dict[str, list[str]] = defaultdict(list)
    ids = [r.event_id for r in rows]
    async with db.uow() as uow:
        for i in range(0, len(ids), _IN_CHUNK):
            stmt = (
                select(InboxRow.event_id, InboxRow.consumer)
                .where(InboxRow.event_id.in_(ids[i : i + _IN_CHUNK]))
                .order_by(InboxRow.processed_at)
            )
            for event_id, consumer in (await uow.session.execute(stmt)).all():
                by_event[event_id].append(consumer)
    for r in rows:
        r.consumers = by_event.get(r.event_id, [])


def cycle_tree(rows: list[EventRow]) -> list[tuple[int, EventRow]]:
    """(depth, row) in causal order: each event followed by the events that answer it."""
    ids = {r.event_id for r in rows}
    children: dict[str | None, list[EventRow]] = defaultdict(list)
    for r in rows:
        parent = r.causation_id if r.causation_id in ids else None
        children[parent].append(r)
    for siblings in children.values():
        siblings.sort(key=lambda r: (r.occurred_at, r.id))
    out: list[tuple[int, EventRow]] = []
    stack = [(0, r) for r in reversed(children[None])]
    while stack:
        depth, row = stack.pop()
        out.append((depth, row))
        stack.extend((depth + 1, c) for c in reversed(children.get(row.event_id, [])))
    seen = {r.event_id for _, r in out}
    # Only a causation loop (which no producer makes) could leave rows unvisited; show them.
    out.extend((0, r) for r in rows if r.event_id not in seen)
    return out
