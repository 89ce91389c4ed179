"""`distillery`: the Typer application (pyproject: `distillery = "shared.cli.main:app"`)."""

from __future__ import annotations

import os
import sys

import structlog
import typer

from shared.logs import configure_logging

from . import cycle, events, outbox
from .demo import demo
from .up import up

app = typer.Typer(
    name="distillery",
    help="Distil an expensive general model into a small student for one task, and keep it good.",
    no_args_is_help=True,
    add_completion=False,
)


class _CurrentStderr:
    """Whatever sys.stderr is when a line is written, not when logging was configured:
    commands also run in process (tests, the demo), where the stream is swapped and closed."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@app.callback()
def _setup() -> None:
    # Kernel code logs through structlog; a CLI shows warnings and errors only, on stderr,
    # unless DISTILLERY_LOG_LEVEL asks for more.
    configure_logging(os.environ.get("DISTILLERY_LOG_LEVEL", "WARNING"), json=False)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()))


app.command("up")(up)
app.command("demo")(demo)
app.add_typer(cycle.app, name="cycle")
app.add_typer(events.app, name="events")
app.add_typer(outbox.app, name="outbox")


if __name__ == "__main__":
    app()
