"""`distillery task apply|list|show`: register task specs, see what is registered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from sqlalchemy.engine import make_url

from shared.db import Database
from shared.settings import PlatformSettings
from shared.tasks import TaskSpecError, load_spec, spec_from_json
from shared.tasks.registry import AppliedTask, apply_spec, latest_spec, list_specs
from shared.tasks.tables import TaskSpecRow

from .common import (
    CLI_PRODUCER,
    HomeOption,
    Target,
    as_utc,
    database_errors,
    fail,
    mask_nats_url,
    require_database,
    resolve,
    short,
    stderr,
    stdout,
)
from .outbox import RelayOutcome, relay_pending

if TYPE_CHECKING:
    from shared.artifacts import AsyncArtifactStore

app = typer.Typer(help="Task specs: apply one, list them, show a stored version.")


def open_store(target: Target) -> AsyncArtifactStore:
    """The store the running system uses: a live `up` names its folder in runtime.json."""
    from shared.artifacts import AsyncArtifactStore, store_from_settings

    settings = PlatformSettings(home=target.home)
    runtime_root = (target.runtime or {}).get("artifact_root")
    if "artifact_root" not in settings.model_fields_set and runtime_root:
        settings = settings.model_copy(update={"artifact_root": Path(runtime_root)})
    return AsyncArtifactStore(store_from_settings(settings))


def prepare_database(target: Target) -> None:
    """Applying a task is often the first thing done in a new home: create the embedded
    SQLite database then, migrated, as `up` would. Any other database must already exist."""
    url = make_url(target.database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    if not Path(url.database).exists():
        from shared.db.migrate import upgrade  # alembic: imported only when it is needed

        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        upgrade(target.database_url)
        stderr().print(f"created and migrated the database {url.database}", markup=False)


async def _apply(
    target: Target, file: Path, resolve_models: bool
) -> tuple[AppliedTask, RelayOutcome | None]:
    db = Database(target.database_url)
    try:
        applied = await apply_spec(
            db, open_store(target), file, producer=CLI_PRODUCER, resolve_models=resolve_models
        )
        outcome = await relay_pending(db, target.nats_url) if applied.created else None
        return applied, outcome
    finally:
        await db.dispose()


def print_spec_error(exc: TaskSpecError) -> None:
    err = stderr()
    err.print(f"[bold red]error:[/] {exc.source}: invalid task spec", markup=True)
    for problem in exc.problems:
        err.print(f"  {problem}", markup=False)


def applied_lines(applied: AppliedTask) -> list[str]:
    spec = applied.spec
    state = "created" if applied.created else "unchanged (same spec as the latest version)"
    lines = [
        f"{applied.name} version {applied.version} {state}",
        f"  spec        sha256:{applied.spec_ref.sha256}",
        f"  golden set  {applied.golden_rows} rows, sha256:{spec.ref('golden_set').sha256}",
    ]
    for label, field in (("probe set", "probe_set"), ("general", "general_text")):
        if getattr(spec, field) is not None:
            lines.append(f"  {label:<10}  sha256:{spec.ref(field).sha256}")
    base = spec.student.base_model_ref
    resolved = f"sha256:{base.sha256}" if base else "not resolved (--no-resolve-models)"
    lines.append(f"  base model  {spec.student.base_model} -> {resolved}")
    return lines


def report_relay(target: Target, outcome: RelayOutcome | None) -> None:
    if outcome is None:
        return
    url = mask_nats_url(target.nats_url)
    if outcome.error:
        stderr().print(
            f"[bold yellow]warning:[/] {outcome.error} at {url}. The registration is committed "
            f"to the outbox ({outcome.pending} event(s) pending) and will be relayed later: "
            "run `distillery outbox flush` once NATS is up."
        )
    else:
        stderr().print(f"task registered: event relayed to {url}", markup=False)


@app.command("apply")
def apply(
    file: Annotated[
        Path, typer.Argument(help="The task's spec.yaml, or its folder.", show_default=False)
    ],
    no_resolve_models: Annotated[
        bool,
        typer.Option(
            "--no-resolve-models",
            help="Do not look up student.base_model (for a system with no model imported yet).",
        ),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Validate a task spec and its files, store them, and register a new version.

    Applying an unchanged spec again is a no-op. A bad spec exits with status 2 and one
    `field: problem` line per problem.
    """
    # Imported here: the S3 client is slow to import and most commands never need it.
    from shared.artifacts import ArtifactError

    if file.is_dir():
        file = file / "spec.yaml"
    target = resolve(home)
    try:
        load_spec(file)  # cheap, and a bad spec should not leave a new database behind
        with database_errors(target):
            prepare_database(target)
            applied, outcome = asyncio.run(_apply(target, file, not no_resolve_models))
    except TaskSpecError as exc:
        print_spec_error(exc)
        raise typer.Exit(2) from None
    except ArtifactError as exc:
        raise fail(f"artifact store: {exc}") from None
    out = stdout()
    for line in applied_lines(applied):
        out.print(line, markup=False)
    report_relay(target, outcome)


@app.command("list")
def list_(
    all_versions: Annotated[
        bool, typer.Option("--all", help="Every version, not only the latest.")
    ] = False,
    home: HomeOption = None,
) -> None:
    """Registered tasks, with their latest (or every) version."""
    target = resolve(home)
    require_database(target)
    with database_errors(target):
        rows = asyncio.run(_list(target, all_versions))
    if not rows:
        stderr().print("no tasks registered; `distillery task apply SPEC.yaml` registers one")
        return
    width = max(len("NAME"), *(len(r.name) for r in rows))
    out = stdout()
    out.print(f"{'NAME':<{width}}  VERSION  APPLIED (UTC)        SPEC", markup=False)
    for r in rows:
        applied = as_utc(r.applied_at)
        when = applied.strftime("%Y-%m-%d %H:%M:%S") if applied else "-"
        line = f"{r.name:<{width}}  {r.version:<7}  {when}  sha256:{short(r.sha256, 12)}"
        out.print(line, markup=False)


async def _list(target: Target, all_versions: bool) -> list[TaskSpecRow]:
    db = Database(target.database_url)
    try:
        return await list_specs(db, all_versions=all_versions)
    finally:
        await db.dispose()


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The task's name.", show_default=False)],
    version: Annotated[
        int | None, typer.Option(min=1, help="A version (default: the latest).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Print a registered spec, as stored (files resolved to artifacts), in YAML."""
    target = resolve(home)
    require_database(target)
    with database_errors(target):
        row, data = asyncio.run(_fetch(target, name, version))
    if row is None:
        which = f"version {version} of task {name!r}" if version else f"task {name!r}"
        raise fail(f"no {which} is registered in {target.safe_database_url}")
    applied = as_utc(row.applied_at)
    when = applied.isoformat(timespec="seconds") if applied else "-"
    header = f"# {row.name} version {row.version}, applied {when}, spec sha256:{row.sha256}\n"
    stdout().out(header + to_yaml(data), highlight=False)


async def _fetch(
    target: Target, name: str, version: int | None
) -> tuple[TaskSpecRow | None, dict[str, Any]]:
    db = Database(target.database_url)
    try:
        row = await latest_spec(db, name, version)
    finally:
        await db.dispose()
    if row is None:
        return None, {}
    from shared.artifacts import ArtifactError

    try:
        raw = await open_store(target).get_bytes(row.ref())
        spec = spec_from_json(raw, f"{row.name} version {row.version}")
    except (ArtifactError, TaskSpecError) as exc:
        raise fail(f"stored spec {row.uri}: {exc}") from None
    return row, spec.model_dump(mode="json")


class _BlockDumper(yaml.SafeDumper):
    """Multi-line text (the instructions, seed examples) as `|` blocks, as a person writes it."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def to_yaml(data: dict[str, Any]) -> str:
    # Reads back as the same data (`yaml.safe_load`), so a shown spec can be diffed or edited.
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)
