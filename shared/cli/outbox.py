"""The CLI's own outbox relay: what `cycle start` commits, this sends, now or later.

The CLI is a producer like any service: it commits to the outbox first, so an event is never
lost to a NATS outage; it relays only its own rows (producer "ops-cli"), each service relays
its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import nats
import typer
from nats.js.errors import NotFoundError
from sqlalchemy import func, select

from shared.bus import JetStreamPublisher, ensure_stream, make_broker
from shared.db import Database, OutboxRow
from shared.events import STREAM_NAME, StreamPolicy
from shared.relay import OutboxRelay
from shared.settings import PlatformSettings

from .common import (
    CLI_PRODUCER,
    HomeOption,
    Target,
    database_errors,
    fail,
    mask_nats_url,
    require_database,
    resolve,
    stderr,
    stdout,
)

app = typer.Typer(help="The CLI's outbox: events committed but not yet on the bus.")


@dataclass(frozen=True)
class RelayOutcome:
    sent: int
    pending: int
    error: str | None = None


async def nats_reachable(url: str, timeout_s: float = 2.0) -> bool:
    """A NATS server greets with INFO; checked by hand because nats-py's failed connect
    retries for seconds and prints a traceback per attempt."""
    for server in url.split(","):
        parts = urlsplit(server.strip())
        if not parts.hostname:
            continue
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port or 4222), timeout_s
            )
        except (OSError, TimeoutError):
            continue
        try:
            greeting = await asyncio.wait_for(reader.readline(), timeout_s)
        except (OSError, TimeoutError):
            greeting = b""
        finally:
            writer.close()
        if greeting.startswith(b"INFO"):
            return True
    return False


async def count_pending(db: Database) -> int:
    async with db.uow() as uow:
        stmt = (
            select(func.count())
            .select_from(OutboxRow)
            .where(OutboxRow.producer == CLI_PRODUCER, OutboxRow.sent_at.is_(None))
        )
        return int(await uow.session.scalar(stmt) or 0)


async def _declare_stream_if_missing(nats_url: str) -> None:
    # Only create it: updating an existing stream with this process's settings could change a
    # production stream's replicas. Services own the declaration; this is for a bus no
    # service has touched yet.
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=1)
    try:
        try:
            await nc.jetstream().stream_info(STREAM_NAME)
            return
        except NotFoundError:
            pass
    finally:
        await nc.close()
    settings = PlatformSettings()
    await ensure_stream(nats_url, StreamPolicy(replicas=settings.stream_replicas))


async def relay_pending(db: Database, nats_url: str, timeout_s: float = 30.0) -> RelayOutcome:
    """Send the CLI's pending rows; never raises for an unreachable or failing bus."""
    if not await nats_reachable(nats_url):
        return RelayOutcome(0, await count_pending(db), "NATS is unreachable")

    async def send() -> int:
        await _declare_stream_if_missing(nats_url)
        async with make_broker(nats_url, client_name=CLI_PRODUCER) as broker:
            await broker.connect()
            relay = OutboxRelay(db, JetStreamPublisher(broker), producer=CLI_PRODUCER)
            return await relay.drain()

    try:
        sent = await asyncio.wait_for(send(), timeout_s)
    except Exception as exc:  # the rows stay committed; the reason is reported, not hidden
        return RelayOutcome(0, await count_pending(db), f"relay failed: {exc!r}")
    pending = await count_pending(db)
    error = None if not pending else "some events could not be published (see `events tail`)"
    return RelayOutcome(sent, pending, error)


async def _flush(target: Target) -> RelayOutcome:
    db = Database(target.database_url)
    try:
        if not await count_pending(db):
            return RelayOutcome(0, 0)
        return await relay_pending(db, target.nats_url)
    finally:
        await db.dispose()


@app.command("flush")
def flush(home: HomeOption = None) -> None:
    """Relay the CLI's pending events (e.g. after `cycle start` found NATS down)."""
    target = resolve(home)
    require_database(target)
    with database_errors(target):
        outcome = asyncio.run(_flush(target))
    url = mask_nats_url(target.nats_url)
    if not outcome.sent and not outcome.pending:
        stdout().print("nothing pending in the CLI's outbox")
        return
    if outcome.error and not outcome.sent:
        raise fail(f"{outcome.error} at {url}; {outcome.pending} event(s) still pending")
    stdout().print(f"relayed {outcome.sent} event(s) to {url}; {outcome.pending} still pending")
    if outcome.pending:
        stderr().print(f"[yellow]warning:[/] {outcome.error}")
        raise typer.Exit(1)
