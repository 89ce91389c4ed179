"""`distillery demo`: one cycle through the embedded runtime, start to finish, then clean up."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer
from sqlalchemy import func, select

from shared.db import Database, InboxRow, OutboxRow
from shared.runtime.natsd import free_port
from shared.runtime.registry import RegistryError, discover

from .common import Target, fail, stdout
from .cycle import build_request, report_request, request_cycle, show_cycle
from .embedded import EmbeddedRuntime, StartupError
from .up import make_announcer

DEMO_TASK = "demo-support-triage"
LATER_STAGES = (
    "synth-data → curation → trainer → evaluator → quantizer → deployer → feedback-collector"
)


async def _progress(db_url: str, event_id: str) -> tuple[bool, int]:
    """(relayed?, how many consumers applied it)"""
    db = Database(db_url)
    try:
        async with db.uow() as uow:
            sent = await uow.session.scalar(
                select(OutboxRow.sent_at).where(OutboxRow.event_id == event_id)
            )
            consumed = await uow.session.scalar(
                select(func.count()).select_from(InboxRow).where(InboxRow.event_id == event_id)
            )
        return sent is not None, int(consumed or 0)
    finally:
        await db.dispose()


def wait_for(target: Target, event_id: str, *, consumers: bool, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        relayed, consumed = asyncio.run(_progress(target.database_url, event_id))
        if relayed and (consumed or not consumers):
            return True
        time.sleep(0.2)
    return False


def run_cycle(rt: EmbeddedRuntime, announce) -> UUID:
    target = rt.target
    event = build_request(DEMO_TASK, "manual")
    outcome = asyncio.run(request_cycle(target, event))
    if outcome.error:
        report_request(target, event, outcome)
        raise fail("the demo's own nats-server did not take the event; see the warning above")
    event_id = str(event.event_id)
    if not wait_for(target, event_id, consumers=False, timeout_s=15):
        raise fail("the cycle request was not relayed within 15 s")
    announce(
        f"cycle {event.cycle_id} requested (task {DEMO_TASK}): committed to the outbox, "
        "relayed to JetStream"
    )
    if rt.specs:
        announce("waiting (up to 15 s) for a registered service to consume it")
        if not wait_for(target, event_id, consumers=True, timeout_s=15):
            announce("no service consumed it within 15 s; see the logs under HOME/logs")
        time.sleep(1.0)  # let the consumer's own answer leave its outbox
    return event.cycle_id


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: nothing is left running


def demo(
    home: Annotated[
        Path | None,
        typer.Option(
            help="Keep the runtime's files here (default: a temporary folder, removed after)."
        ),
    ] = None,
) -> None:
    """Start the embedded runtime, request one cycle, show its timeline, shut down."""
    console = stdout()
    announce = make_announcer(console)
    try:
        specs = discover()
    except RegistryError as exc:
        raise fail(str(exc)) from None
    workdir = home or Path(tempfile.mkdtemp(prefix="distillery-demo-"))
    # A free port, so the demo never collides with a `distillery up` on 4222.
    rt = EmbeddedRuntime(
        workdir,
        specs,
        nats_port=free_port(),
        announce=announce,
        on_change=lambda child, message: announce(f"{child.name}: {message}"),
    )
    signal.signal(signal.SIGTERM, _interrupt)
    stop = threading.Event()
    supervisor = threading.Thread(target=rt.supervise, args=(stop,), name="supervisor")
    try:
        announce(f"demo: starting the embedded runtime in {rt.home}")
        try:
            rt.start()
        except StartupError as exc:
            raise fail(str(exc)) from None
        supervisor.start()
        cycle_id = run_cycle(rt, announce)
        console.print()
        show_cycle(rt.target, cycle_id)
        console.print()
        console.print(
            "[bold yellow]note:[/] the loop's later stages are not implemented yet "
            f"({LATER_STAGES}); README.md lists what exists today. This demo shows the "
            "kernel: the request committed to the outbox, relayed to JetStream, and the "
            "timeline read back."
        )
    finally:
        stop.set()
        if supervisor.is_alive():
            supervisor.join()
        announce("demo: shutting down")
        rt.stop()
        if home is None:
            shutil.rmtree(workdir, ignore_errors=True)
    announce("demo: done; no process left running")
