"""`distillery cycle start|status`: ask for an improvement cycle, then follow it."""

from __future__ import annotations

import asyncio
from typing import Annotated
from uuid import UUID, uuid4

import typer
from pydantic import ValidationError

from shared.db import Database
from shared.events.catalog import CycleReason, CycleRequested

from .common import (
    CLI_PRODUCER,
    HomeOption,
    Target,
    database_errors,
    fail,
    mask_nats_url,
    parse_uuid,
    require_database,
    resolve,
    short,
    stderr,
    stdout,
)
from .outbox import RelayOutcome, relay_pending
from .render import print_cycle
from .timeline import EventRow, cycle_tree, fetch_events

app = typer.Typer(help="Improvement cycles: start one, see where one is.")


def build_request(task: str, reason: str) -> CycleRequested:
    try:
        return CycleRequested(
            cycle_id=uuid4(), task_name=task, reason=reason, producer=CLI_PRODUCER
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems) from None


async def request_cycle(target: Target, event: CycleRequested) -> RelayOutcome:
    """Commit to the outbox, then try to relay; the commit alone is the promise."""
    db = Database(target.database_url)
    try:
        async with db.uow() as uow:
            await uow.publish(event)
            await uow.commit()
        return await relay_pending(db, target.nats_url)
    finally:
        await db.dispose()


def report_request(target: Target, event: CycleRequested, outcome: RelayOutcome) -> None:
    err = stderr()
    url = mask_nats_url(target.nats_url)
    if outcome.error:
        err.print(
            f"[bold yellow]warning:[/] {outcome.error} at {url}. The request is committed to "
            f"the outbox ({outcome.pending} event(s) pending) and will be relayed later: "
            "run `distillery outbox flush` once NATS is up."
        )
    else:
        err.print(
            f"cycle requested: task {event.task_name!r}, reason {event.reason}, "
            f"event {short(str(event.event_id))}, relayed to {url}"
        )


@app.command("start")
def start(
    task: Annotated[str, typer.Argument(help="Name of the task to improve.")],
    reason: Annotated[CycleReason, typer.Option(help="Why the cycle is requested.")] = "manual",
    home: HomeOption = None,
) -> None:
    """Request a cycle for TASK; prints its cycle id (stdout) once committed.

    The request is committed to the outbox, then relayed to NATS. If NATS is down it stays
    committed and the command still succeeds, with a warning; `outbox flush` sends it later.
    """
    event = build_request(task, reason)
    target = resolve(home)
    require_database(target)
    with database_errors(target):
        outcome = asyncio.run(request_cycle(target, event))
    report_request(target, event, outcome)
    stdout().print(str(event.cycle_id), markup=False)


async def load_cycle(target: Target, cycle_id: UUID) -> list[EventRow]:
    db = Database(target.database_url)
    try:
        return await fetch_events(db, cycle_id=cycle_id)
    finally:
        await db.dispose()


def show_cycle(target: Target, cycle_id: UUID) -> None:
    with database_errors(target):
        rows = asyncio.run(load_cycle(target, cycle_id))
    if not rows:
        raise fail(f"no events for cycle {cycle_id} in {target.safe_database_url}")
    print_cycle(stdout(), str(cycle_id), cycle_tree(rows))


@app.command("status")
def status(
    cycle_id: Annotated[
        UUID,
        typer.Argument(parser=parse_uuid, metavar="CYCLE_ID", help="The id `cycle start` printed."),
    ],
    home: HomeOption = None,
) -> None:
    """The timeline of one cycle: each event, what it answered, who consumed it."""
    target = resolve(home)
    require_database(target)
    show_cycle(target, cycle_id)
