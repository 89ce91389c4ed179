"""`distillery cycle start|status`: ask for an improvement cycle, then follow it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID, uuid4

import typer
from pydantic import ValidationError

from shared.artifacts import store_from_settings
from shared.db import Database
from shared.events.base import ArtifactRef
from shared.events.catalog import CycleReason, CycleRequested
from shared.settings import PlatformSettings
from shared.tasks.registry import latest_spec
from shared.tasks.tables import TaskSpecRow

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
from .results import MEASURED_TEACHER, collect
from .results_render import markdown, page
from .timeline import EventRow, cycle_tree, fetch_events

app = typer.Typer(help="Improvement cycles: start one, see where one is.")


def build_request(task: str, reason: str, registered: TaskSpecRow | None = None) -> CycleRequested:
    """The request; with the registered spec, so every stage works on the same version."""
    pinned = (
        {"task_version": registered.version, "task_spec": registered.ref()} if registered else {}
    )
    try:
        return CycleRequested(
            cycle_id=uuid4(), task_name=task, reason=reason, producer=CLI_PRODUCER, **pinned
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems) from None


async def registered_task(target: Target, task: str, version: int | None) -> TaskSpecRow | None:
    db = Database(target.database_url)
    try:
        return await latest_spec(db, task, version)
    finally:
        await db.dispose()


def require_registered(target: Target, task: str, version: int | None) -> TaskSpecRow:
    """A cycle runs on an applied spec; asking for one on an unknown task is a usage error."""
    with database_errors(target):
        row = asyncio.run(registered_task(target, task, version))
    if row is not None:
        return row
    if version is not None:
        raise fail(f"task {task!r} has no version {version}; `distillery task list --all`", 2)
    raise fail(
        f"task {task!r} is not registered; apply its spec first: "
        "`distillery task apply path/to/spec.yaml` (`distillery task list` shows what is)",
        2,
    )


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
        version = f" version {event.task_version}" if event.task_version else ""
        err.print(
            f"cycle requested: task {event.task_name!r}{version}, reason {event.reason}, "
            f"event {short(str(event.event_id))}, relayed to {url}"
        )


@app.command("start")
def start(
    task: Annotated[str, typer.Argument(help="Name of the task to improve.")],
    reason: Annotated[CycleReason, typer.Option(help="Why the cycle is requested.")] = "manual",
    version: Annotated[
        int | None, typer.Option(min=1, help="A registered version (default: the latest).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Request a cycle for TASK; prints its cycle id (stdout) once committed.

    TASK must be registered (`distillery task apply`); the request carries the spec version
    it runs on. It is committed to the outbox, then relayed to NATS. If NATS is down it stays
    committed and the command still succeeds, with a warning; `outbox flush` sends it later.
    """
    build_request(task, reason)  # a malformed request fails before any database work
    target = resolve(home)
    require_database(target)
    event = build_request(task, reason, require_registered(target, task, version))
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


@app.command("results")
def results(
    cycle_id: Annotated[
        UUID,
        typer.Argument(parser=parse_uuid, metavar="CYCLE_ID", help="The id `cycle start` printed."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Also write results.md and results.html (with charts) in this folder."),
    ] = None,
    queries_per_day: Annotated[
        int, typer.Option(min=1, help="The query volume the break-even is computed at.")
    ] = 10_000,
    home: HomeOption = None,
) -> None:
    """The cycle's results table: quality, latency, cost, prompt tokens, serving forms,
    residency and break-even, every figure read from the cycle's events and reports."""
    target = resolve(home)
    require_database(target)
    print_results(target, cycle_id, out=out, queries_per_day=queries_per_day)


def print_results(
    target: Target,
    cycle_id: UUID,
    *,
    out: Path | None,
    queries_per_day: int,
    teacher_label: str = MEASURED_TEACHER,
    drift: dict[str, Any] | None = None,
) -> None:
    """`drift`: the demo's drift phase (demo_drift.Drift.summary), shown beside the cycle's."""
    with database_errors(target):
        rows = asyncio.run(load_cycle(target, cycle_id))
    if not rows:
        raise fail(f"no events for cycle {cycle_id} in {target.safe_database_url}")
    store = store_from_settings(PlatformSettings(home=target.home))
    found = collect(
        [(r.subject, json.loads(r.payload)) for r in rows],
        lambda ref: store.get_bytes(ArtifactRef.model_validate(ref)),
        queries_per_day=queries_per_day,
        teacher_label=teacher_label,
    )
    if drift is not None:
        found["drift"] = drift
    stdout().print(markdown(found), markup=False, highlight=False)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text(markdown(found), encoding="utf-8")
        (out / "results.html").write_text(page(found), encoding="utf-8")
        (out / "results.json").write_text(json.dumps(found, indent=2), encoding="utf-8")
        stdout().print(f"written: {out / 'results.md'}, results.html, results.json")
