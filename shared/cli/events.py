"""`distillery events tail`: the platform's event timeline, from the outbox and the inbox."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated
from uuid import UUID

import typer
from rich.console import Console
from rich.live import Live
from sqlalchemy import func, select

from shared.db import Database, OutboxRow

from .common import HomeOption, Target, database_errors, parse_uuid, require_database, resolve
from .common import stdout as stdout_console
from .render import print_tail, tail_line, tail_table
from .timeline import EventRow, fetch_events

app = typer.Typer(help="The event timeline of the whole platform.")

POLL_S = 0.5
# On PostgreSQL an id can become visible after a higher one (its transaction committed
# later), so each poll looks this far back and skips what it already printed.
LOOKBACK_IDS = 256


async def _max_id(db: Database) -> int:
    async with db.uow() as uow:
        return int(await uow.session.scalar(select(func.max(OutboxRow.id))) or 0)


async def _polls(stop: asyncio.Event):
    """One tick per poll interval, until Ctrl-C/SIGTERM sets `stop`.

    Stopping between polls, never by cancelling one mid-query: a cancelled aiosqlite call
    could leave dispose() waiting on its thread, and the command never exited.
    """
    while True:
        try:
            await asyncio.wait_for(stop.wait(), POLL_S)
        except TimeoutError:
            yield
        else:
            return


async def _follow_plain(
    db: Database,
    console: Console,
    rows: list[EventRow],
    cycle: UUID | None,
    subject: str | None,
    stop: asyncio.Event,
) -> None:
    for r in rows:
        console.print(tail_line(r), markup=False)
    last = rows[-1].id if rows else await _max_id(db)
    seen = {r.id for r in rows}
    async for _ in _polls(stop):
        floor = max(0, last - LOOKBACK_IDS)
        fresh = await fetch_events(db, cycle_id=cycle, subject=subject, after_id=floor)
        for r in fresh:
            if r.id not in seen:
                console.print(tail_line(r), markup=False)
                seen.add(r.id)
                last = max(last, r.id)
        seen = {i for i in seen if i > floor}


async def _follow_live(
    db: Database,
    console: Console,
    rows: list[EventRow],
    limit: int,
    cycle: UUID | None,
    subject: str | None,
    stop: asyncio.Event,
) -> None:
    # On a terminal the table is redrawn, so rows turning sent and new consumers show too.
    title = "following the outbox (Ctrl-C to stop)"
    with Live(tail_table(rows, title), console=console, auto_refresh=False) as live:
        async for _ in _polls(stop):
            rows = await fetch_events(db, limit=limit, cycle_id=cycle, subject=subject)
            live.update(tail_table(rows, title), refresh=True)


async def _tail(
    target: Target, limit: int, cycle: UUID | None, subject: str | None, follow: bool
) -> None:
    console = stdout_console()
    db = Database(target.database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        rows = await fetch_events(db, limit=limit, cycle_id=cycle, subject=subject)
        if not follow:
            if rows:
                print_tail(console, rows)
            else:
                console.print("no matching events" if cycle or subject else "no events yet")
        elif console.is_terminal:
            await _follow_live(db, console, rows, limit, cycle, subject, stop)
        else:
            await _follow_plain(db, console, rows, cycle, subject, stop)
    finally:
        await db.dispose()


@app.command("tail")
def tail(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep polling (every 0.5 s) for new events.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest events.")] = 50,
    cycle: Annotated[
        UUID | None,
        typer.Option(parser=parse_uuid, metavar="ID", help="Only this cycle's events."),
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(
            metavar="PATTERN",
            help="NATS-style subject pattern: `*` is one token, `>` the rest; the "
            "`distillery.` prefix is optional (e.g. `cycle.>`).",
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Show the latest events, oldest first.

    Each event with its time, subject, producer, cycle, id, whether it left the outbox
    (sent/pending), and the consumers that processed it (from their inbox).
    """
    target = resolve(home)
    require_database(target)
    try:
        with database_errors(target):
            asyncio.run(_tail(target, limit, cycle, subject, follow))
    except KeyboardInterrupt:
        pass
