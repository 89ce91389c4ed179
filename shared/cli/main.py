"""`distillery`: the Typer application (pyproject: `distillery = "shared.cli.main:app"`)."""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points

import typer

from shared.logs import configure_logging

from . import cycle, events, models, outbox, task
from .demo import demo
from .up import up

app = typer.Typer(
    name="distillery",
    help="Distil an expensive general model into a small student for one task, and keep it good.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _setup() -> None:
    # Kernel code logs through structlog; a CLI shows warnings and errors only, on stderr,
    # unless DISTILLERY_LOG_LEVEL asks for more.
    configure_logging(os.environ.get("DISTILLERY_LOG_LEVEL", "WARNING"), json=False)


app.command("up")(up)
app.command("demo")(demo)
app.add_typer(task.app, name="task")
app.add_typer(models.app, name="models")
app.add_typer(cycle.app, name="cycle")
app.add_typer(events.app, name="events")
app.add_typer(outbox.app, name="outbox")


def _mount_plugins() -> None:
    """Services add their own commands (e.g. `distillery review`) through entry points, so the
    CLI never imports a service by name. A broken plugin is reported, not fatal."""
    for ep in entry_points(group="distillery.cli"):
        try:
            app.add_typer(ep.load(), name=ep.name)
        except Exception as exc:  # a plugin's import error must not take down every command
            print(f"distillery: plugin {ep.name!r} unavailable: {exc}", file=sys.stderr)


_mount_plugins()


if __name__ == "__main__":
    app()
