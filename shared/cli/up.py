"""`distillery up`: the whole platform on this machine, supervised, until Ctrl-C."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from shared.runtime.registry import RegistryError, discover
from shared.runtime.supervisor import State
from shared.settings import PlatformSettings

from .common import HomeOption, fail, read_runtime, stdout
from .embedded import EmbeddedRuntime, StartupError

_STATE_STYLE = {State.RUNNING: "green", State.RESTARTING: "yellow", State.FAILED: "bold red"}


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def health_table(rt: EmbeddedRuntime, started: float) -> Table:
    now = time.monotonic()
    table = Table(title=f"distillery up · {rt.home} · Ctrl-C stops", title_justify="left")
    for col, justify in (("service", "left"), ("pid", "right"), ("state", "left")):
        table.add_column(col, justify=justify)
    table.add_column("restarts", justify="right")
    table.add_column("uptime", justify="right")
    nats_pid, nats_state = rt.nats_state()
    style = "green" if nats_state == "running" else "bold red"
    nats_cell = f"[{style}]{nats_state}[/]"
    table.add_row("nats-server", str(nats_pid or "-"), nats_cell, "-", _uptime(now - started))
    for c in rt.supervisor.children if rt.supervisor else []:
        table.add_row(
            escape(c.name),
            str(c.pid or "-"),
            f"[{_STATE_STYLE.get(c.state, 'dim')}]{c.state}[/]",
            str(c.restarts),
            _uptime(c.uptime(now)),
        )
    return table


def supervise_until(
    rt: EmbeddedRuntime, stop: threading.Event, deadline: float | None, each_second: Callable
) -> bool:
    """Tick the supervisor until stopped; True when the deadline, not a signal, ended it."""
    next_refresh = 0.0
    while not stop.wait(0.2):
        rt.tick()
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return True
        if now >= next_refresh:
            each_second()
            next_refresh = now + 1.0
    return False


def make_announcer(console: Console) -> Callable[[str], None]:
    def announce(message: str) -> None:
        console.print(f"{datetime.now().strftime('%H:%M:%S')} {escape(message)}")

    return announce


def up(
    home: HomeOption = None,
    nats_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Port for nats-server (default: 4222, or a free one if 4222 is taken).",
            show_default=False,
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", metavar="NAME", help="Start only this service (repeatable)."),
    ] = None,
    for_seconds: Annotated[float | None, typer.Option(hidden=True, min=0)] = None,
) -> None:
    """Run the platform on this machine until Ctrl-C.

    Starts nats-server (JetStream), migrates the database, creates the artifact folder, then
    runs every registered service as a supervised process: restarted with backoff (1 s
    doubling to 30 s), marked failed after 5 crashes within 60 s. Logs go to HOME/logs;
    HOME/runtime.json tells the other commands where everything is. The bus runs with
    authorization: each service connects as its own NATS user, with a password made once in
    HOME/credentials (owner-only files); the CLI connects as "ops".
    """
    console = stdout()
    try:
        specs = discover(only=only)
    except RegistryError as exc:
        raise fail(str(exc)) from None
    home_dir = PlatformSettings(**({"home": home} if home else {})).home.resolve()
    running = read_runtime(home_dir)
    if running:
        raise fail(
            f"`distillery up` is already running for {home_dir} "
            f"(pid {running.get('supervisor_pid')}); stop it first or use another --home"
        )

    announce = make_announcer(console)
    rt = EmbeddedRuntime(
        home_dir,
        specs,
        nats_port=nats_port,
        announce=announce,
        on_change=lambda child, message: announce(f"{child.name}: {message}"),
    )
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        announce(f"starting the embedded runtime in {home_dir}")
        try:
            rt.start()
        except StartupError as exc:
            raise fail(str(exc)) from None
        started = time.monotonic()
        deadline = started + for_seconds if for_seconds is not None else None
        if console.is_terminal:
            with Live(health_table(rt, started), console=console, auto_refresh=False) as live:
                timed_out = supervise_until(
                    rt, stop, deadline, lambda: live.update(health_table(rt, started), refresh=True)
                )
        else:
            timed_out = supervise_until(rt, stop, deadline, lambda: None)
        announce("time is up; stopping" if timed_out else "stopping")
    finally:
        rt.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    announce("stopped")
