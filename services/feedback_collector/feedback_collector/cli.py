"""`distillery feedback stats`: the online metrics the deployer's promotion reads, by query.

Mounted by the main CLI through the `distillery.cli` entry-point group (`feedback =
"feedback_collector.cli:feedback"`); importing this module builds nothing but the Typer app.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from shared.cli.common import HomeOption, database_errors, fail, require_database, resolve, stdout

feedback = typer.Typer(
    help="Production traffic and feedback: online metrics.", no_args_is_help=True
)

COLUMNS = (
    ("model_version", "version", "<18"),
    ("stage", "stage", "<8"),
    ("requests", "requests", ">8"),
    ("error_rate", "errors", ">7"),
    ("p50_ms", "p50 ms", ">8"),
    ("p95_ms", "p95 ms", ">8"),
    ("schema_valid_rate", "schema", ">7"),
    ("negative_rate", "negative", ">8"),
    ("escalation_rate", "escal.", ">7"),
)


def _cell(key: str, value: object, align: str) -> str:
    if value is None:
        text = "-"
    elif key.endswith("_rate"):
        text = f"{value:.1%}"
    elif key.endswith("_ms"):
        text = f"{value:.0f}"
    else:
        text = str(value)
    width = int(align[1:])
    # A model version is often a sha256: its head names it well enough in a table.
    return format(text if len(text) <= width else text[: width - 1] + "…", align)


@feedback.command("stats")
def stats(
    task: Annotated[str, typer.Argument(help="The task's name.")],
    hours: Annotated[
        float, typer.Option(help="The window: traces of the last HOURS hours.", min=0.0)
    ] = 24.0,
    schema: Annotated[
        bool,
        typer.Option(
            help="Report the share of replies valid under the task's output schema "
            "(the latest applied spec's; a task without one reports none)."
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    home: HomeOption = None,
) -> None:
    """Per model version and rollout stage: requests, error rate, P50/P95, schema-valid,
    negative-feedback and escalation rates (shadow replies under stage "shadow")."""
    from shared.cli.task import open_store
    from shared.db import Database
    from shared.tasks.load import spec_from_json
    from shared.tasks.registry import latest_spec

    from .service import stats as query
    from .stats import answer_check

    if hours <= 0:
        raise fail("--hours must be above 0")
    target = resolve(home)
    require_database(target)
    since = datetime.now(UTC) - timedelta(hours=hours)

    async def run():
        db = Database(target.database_url)
        try:
            row = await latest_spec(db, task)
            if row is None:
                raise fail(f"no task named {task!r}; `distillery task list` shows them")
            check = None
            if schema:
                spec = spec_from_json(await open_store(target).get_bytes(row.ref()))
                check = answer_check(spec.output_schema) if spec.output_schema else None
            return await query(db, task, since, check=check)
        finally:
            await db.dispose()

    with database_errors(target):
        found = asyncio.run(run())
    out = stdout()
    if as_json:
        for f in found:
            out.print(json.dumps(f.as_dict()), markup=False, highlight=False)
        return
    if not found:
        out.print(f"no traffic for {task!r} in the last {hours:g} h")
        return
    out.print(" ".join(format(title, align) for _, title, align in COLUMNS), markup=False)
    for f in found:
        row = f.as_dict()
        out.print(" ".join(_cell(key, row[key], align) for key, _, align in COLUMNS), markup=False)
