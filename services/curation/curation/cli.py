"""`distillery review`: the expert review queue, and the rows curation rejected.

Mounted by the main CLI through the `distillery.cli` entry-point group
(`review = "curation.cli:app"`); importing this module builds nothing but the Typer app.
Deciding the last pending item of a run publishes its dataset from this process, in the same
transaction as the decision, into the outbox as producer "curation": the curation service's
relay sends it (or sends it once that service is up).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from shared.cli.common import (
    HomeOption,
    Target,
    database_errors,
    fail,
    require_database,
    resolve,
    stderr,
    stdout,
)

app = typer.Typer(
    help="Expert review of curated rows before a dataset is published.", no_args_is_help=True
)

ReviewId = Annotated[int, typer.Argument(help="The ID `review list` shows.", min=1)]
Reviewer = Annotated[
    str | None,
    typer.Option(help="Who decides (recorded with the decision); default: $USER."),
]


def _target(home: Path | None) -> Target:
    target = resolve(home)
    require_database(target)
    return target


def _artifacts(target: Target):
    from shared.artifacts import AsyncArtifactStore, store_from_settings
    from shared.settings import PlatformSettings

    settings = PlatformSettings(home=target.home)
    runtime_root = (target.runtime or {}).get("artifact_root")
    if "artifact_root" not in settings.model_fields_set and runtime_root:
        settings = settings.model_copy(update={"artifact_root": Path(runtime_root)})
    return AsyncArtifactStore(store_from_settings(settings))


def _excerpt(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


async def _with_db(target: Target, fn):
    from shared.db import Database

    db = Database(target.database_url)
    try:
        return await fn(db)
    finally:
        await db.dispose()


@app.command("list")
def list_pending(home: HomeOption = None) -> None:
    """Pending review items, oldest first."""
    from . import repository as repo
    from .models import CurationRun

    async def load(db) -> list[str]:
        async with db.uow() as uow:
            lines = []
            for item in await repo.reviews(uow.session):
                run = await uow.session.get(CurationRun, item.run_id)
                assert run is not None
                slice_name = "negative" if item.negative else item.use_case
                lines.append(
                    f"{item.id:>5}  {run.task_name[:16]:<16} {run.iteration:>2}  "
                    f"{slice_name[:14]:<14} {item.row_id[:10]:<10} {_excerpt(item.input)}"
                )
            return lines

    target = _target(home)
    with database_errors(target):
        lines = asyncio.run(_with_db(target, load))
    if not lines:
        stderr().print("no reviews pending")
        return
    out = stdout()
    out.print(f"{'ID':>5}  {'task':<16} {'it':>2}  {'slice':<14} {'row':<10} input", markup=False)
    for line in lines:
        out.print(line, markup=False)


@app.command("show")
def show(review_id: ReviewId, home: HomeOption = None) -> None:
    """One review item in full: input, proposed output, and its run."""
    from . import repository as repo
    from .models import CurationRun

    async def load(db) -> list[str] | None:
        async with db.uow() as uow:
            item = await repo.review(uow.session, review_id)
            run = await uow.session.get(CurationRun, item.run_id) if item else None
            if item is None or run is None:
                return None
            negative = "  (negative)" if item.negative else ""
            lines = [
                f"review   {item.id} ({item.status})",
                f"task     {run.task_name} v{run.task_version}, cycle {run.cycle_id}, "
                f"iteration {run.iteration}",
                f"row      {item.row_id}  use case {item.use_case}{negative}",
                "",
                "input:",
                item.input,
                "",
                "output:",
                item.output,
            ]
            if item.edited_output is not None:
                lines += ["", "edited output:", item.edited_output]
            if item.reason:
                lines += ["", f"reason: {item.reason}"]
            return lines

    target = _target(home)
    with database_errors(target):
        lines = asyncio.run(_with_db(target, load))
    if lines is None:
        raise fail(f"no review item {review_id}")
    out = stdout()
    for line in lines:
        out.print(line, markup=False)


def _decide(
    home: Path | None,
    review_id: int,
    decision: str,
    *,
    output: str | None = None,
    reason: str | None = None,
    reviewer: str | None = None,
) -> None:
    from shared.bus.errors import PermanentError

    from .review import ReviewError, decide_review

    target = _target(home)
    artifacts = _artifacts(target)
    who = reviewer or os.environ.get("USER") or None

    async def run(db):
        return await decide_review(
            db, artifacts, review_id, decision, output=output, reason=reason, reviewer=who
        )

    try:
        with database_errors(target):
            outcome = asyncio.run(_with_db(target, run))
    except (ReviewError, PermanentError) as exc:
        raise fail(str(exc)) from None
    err = stderr()
    err.print(f"review {review_id}: {decision}; {outcome.pending_left} pending in its run")
    if outcome.published:
        err.print(
            f"all reviews decided: dataset {outcome.published[:12]} published "
            "(dataset.published is in the outbox; the curation service relays it)"
        )
        stdout().print(outcome.published, markup=False)
    elif outcome.failed:
        err.print(f"all reviews decided, nothing left to publish: cycle failed ({outcome.failed})")


@app.command("approve")
def approve(review_id: ReviewId, reviewer: Reviewer = None, home: HomeOption = None) -> None:
    """Keep the row as curated."""
    _decide(home, review_id, "approved", reviewer=reviewer)


@app.command("reject")
def reject(
    review_id: ReviewId,
    reason: Annotated[str, typer.Option("--reason", help="Why; kept with the rejection.")],
    reviewer: Reviewer = None,
    home: HomeOption = None,
) -> None:
    """Drop the row from the dataset, with a reason."""
    if not reason.strip():
        raise typer.BadParameter("--reason must not be empty")
    _decide(home, review_id, "rejected", reason=reason.strip(), reviewer=reviewer)


@app.command("edit")
def edit(
    review_id: ReviewId,
    output: Annotated[
        str,
        typer.Option("--output", help="The corrected output (JSON when the task has a schema)."),
    ],
    reviewer: Reviewer = None,
    home: HomeOption = None,
) -> None:
    """Replace the row's output with a corrected one; it must pass the task's output rules."""
    _decide(home, review_id, "edited", output=output, reviewer=reviewer)


@app.command("rejected")
def rejected(
    reason: Annotated[
        str | None, typer.Option(help="Only this reason, e.g. near_duplicate.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows.")] = 200,
    home: HomeOption = None,
) -> None:
    """Rows curation rejected, with the reason and what triggered it."""
    from . import repository as repo

    async def load(db) -> list[str]:
        async with db.uow() as uow:
            return [
                f"{run.task_name} it{run.iteration} {(rej.dataset_version or '-')[:12]:<12} "
                f"{rej.row_id[:16]:<16} {rej.reason:<17} {rej.detail}"
                for rej, run in await repo.rejections(uow.session, reason, limit)
            ]

    target = _target(home)
    with database_errors(target):
        lines = asyncio.run(_with_db(target, load))
    if not lines:
        stderr().print("no rejected rows" + (f" with reason {reason}" if reason else ""))
        return
    out = stdout()
    for line in lines:
        out.print(line, markup=False)
