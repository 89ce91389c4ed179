"""Applying task specs and registering base models: the control plane's two registries.

`apply_spec` checks everything a service will later rely on (the spec, its golden set against
the output schema, its probe set, its text, its base model) before it writes anything to the
database, so a bad spec leaves no row and no event. Files are uploaded before the row is
written; they are content-addressed, so an upload whose apply then fails is only an unused
object that a later apply of the same bytes reuses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from shared.db import Database
from shared.events.base import ArtifactRef
from shared.events.catalog import TaskRegistered
from shared.tasks.checks import check_files
from shared.tasks.load import TaskSpecError, load_spec
from shared.tasks.spec import TaskSpec
from shared.tasks.tables import BaseModelRow, TaskSpecRow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from shared.artifacts import AsyncArtifactStore

# The CLI relays only its own outbox rows (producer "ops-cli"); an event staged under another
# producer name by the CLI would wait for a relay that never comes.
DEFAULT_PRODUCER = "ops-cli"
SPEC_MEDIA_TYPE = "application/json"
JSONL_MEDIA_TYPE = "application/jsonl"
TEXT_MEDIA_TYPE = "text/plain; charset=utf-8"
_VERSION_RACE_RETRIES = 5
Row = TypeVar("Row", TaskSpecRow, BaseModelRow)


@dataclass(frozen=True)
class AppliedTask:
    name: str
    version: int
    spec_ref: ArtifactRef
    created: bool
    spec: TaskSpec
    golden_rows: int


async def apply_spec(
    db: Database,
    store: AsyncArtifactStore,
    path: Path,
    producer: str = DEFAULT_PRODUCER,
    *,
    resolve_models: bool = True,
) -> AppliedTask:
    """Validate, upload, and register the spec at `path` as a new version of its task.

    Re-applying an unchanged spec returns the latest version with created=False and publishes
    nothing. Raises TaskSpecError (one `field: problem` line per problem) on bad input.
    """
    path = Path(path)
    spec = load_spec(path)
    files = check_files(spec, path)
    base_ref = spec.student.base_model_ref
    if resolve_models:
        base_ref = await _resolve_student(db, spec, str(path))

    golden = await store.put_bytes(files.golden, media_type=JSONL_MEDIA_TYPE)
    probe = await _put(store, files.probe, JSONL_MEDIA_TYPE)
    general = await _put(store, files.general, TEXT_MEDIA_TYPE)
    resolved = spec.model_copy(
        update={
            "golden_set": golden,
            "probe_set": probe,
            "general_text": general,
            "student": spec.student.model_copy(update={"base_model_ref": base_ref}),
        }
    )
    spec_ref = await store.put_bytes(canonical_json(resolved), media_type=SPEC_MEDIA_TYPE)
    version, created = await register(db, resolved.name, spec_ref, producer)
    return AppliedTask(resolved.name, version, spec_ref, created, resolved, files.golden_rows)


async def register(
    db: Database, name: str, spec_ref: ArtifactRef, producer: str = DEFAULT_PRODUCER
) -> tuple[int, bool]:
    """Register an uploaded spec as the next version of `name` (its row and `task.registered`
    in one transaction); an unchanged spec returns the latest version, created=False.

    The row is the registry: services resolve specs from it, never from the bus.
    """
    for _ in range(_VERSION_RACE_RETRIES):
        try:
            return await _register(db, name, spec_ref, producer)
        except IntegrityError:
            continue  # another apply took this version number first; look again
    raise RuntimeError(f"{name}: could not claim a version number; too many applies")


async def _put(
    store: AsyncArtifactStore, data: bytes | None, media_type: str
) -> ArtifactRef | None:
    return None if data is None else await store.put_bytes(data, media_type=media_type)


def canonical_json(spec: TaskSpec) -> bytes:
    """One byte string per spec content, so the spec's sha256 says whether it changed."""
    data = spec.model_dump(mode="json")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


async def _register(
    db: Database, name: str, spec_ref: ArtifactRef, producer: str
) -> tuple[int, bool]:
    async with db.uow() as uow:
        latest = await _latest(uow.session, name)
        if latest is not None and latest.sha256 == spec_ref.sha256:
            return latest.version, False
        version = (latest.version if latest else 0) + 1
        uow.session.add(
            TaskSpecRow(
                name=name,
                version=version,
                applied_at=datetime.now(UTC),
                **spec_ref.model_dump(),
            )
        )
        await uow.session.flush()
        await uow.publish(
            TaskRegistered(
                cycle_id=None,
                producer=producer,
                task_name=name,
                task_version=version,
                spec=spec_ref,
            )
        )
        await uow.commit()
        return version, True


async def _latest(
    session: AsyncSession, name: str, version: int | None = None, sha256: str | None = None
) -> TaskSpecRow | None:
    stmt = select(TaskSpecRow).where(TaskSpecRow.name == name)
    if version is not None:
        stmt = stmt.where(TaskSpecRow.version == version)
    if sha256 is not None:
        stmt = stmt.where(TaskSpecRow.sha256 == sha256)
    stmt = stmt.order_by(TaskSpecRow.version.desc()).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def latest_spec(
    db: Database, name: str, version: int | None = None, sha256: str | None = None
) -> TaskSpecRow | None:
    """The latest version of task `name`, or that exact version, or the latest with that spec
    sha256; None when there is none."""
    async with db.uow() as uow:
        return _detached(uow.session, await _latest(uow.session, name, version, sha256))


def _detached(session: AsyncSession, row: Row | None) -> Row | None:
    # The unit of work rolls back on exit, which would expire a row still in the session and
    # make every attribute access afterwards fail; a detached row keeps its loaded values.
    if row is not None:
        session.expunge(row)
    return row


async def list_specs(db: Database, *, all_versions: bool = False) -> list[TaskSpecRow]:
    """Every task's latest version (or every version), by name then version."""
    async with db.uow() as uow:
        stmt = select(TaskSpecRow).order_by(TaskSpecRow.name, TaskSpecRow.version)
        rows = list((await uow.session.execute(stmt)).scalars())
        uow.session.expunge_all()
    if all_versions:
        return rows
    latest: dict[str, TaskSpecRow] = {}
    for row in rows:
        latest[row.name] = row
    return list(latest.values())


async def register_base_model(db: Database, name: str, ref: ArtifactRef, source: str) -> bool:
    """Record an imported model under `name`; False if this name already had these weights."""
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(BaseModelRow)
        .values(name=name, source=source, imported_at=datetime.now(UTC), **ref.model_dump())
        .on_conflict_do_nothing(index_elements=["name", "sha256"])
    )
    async with db.uow() as uow:
        result = await uow.session.execute(stmt)
        await uow.commit()
    return result.rowcount == 1


async def resolve_base_model(db: Database, name_or_sha: str) -> BaseModelRow | None:
    """The most recent import under a name, or the import whose manifest is `sha256:<hex>`."""
    stmt = select(BaseModelRow)
    if name_or_sha.startswith("sha256:"):
        stmt = stmt.where(BaseModelRow.sha256 == name_or_sha.removeprefix("sha256:").lower())
    else:
        stmt = stmt.where(BaseModelRow.name == name_or_sha)
    stmt = stmt.order_by(BaseModelRow.imported_at.desc(), BaseModelRow.id.desc()).limit(1)
    async with db.uow() as uow:
        return _detached(uow.session, (await uow.session.execute(stmt)).scalar_one_or_none())


async def _resolve_student(db: Database, spec: TaskSpec, source: str) -> ArtifactRef:
    wanted = spec.student.base_model
    row = await resolve_base_model(db, wanted)
    if row is None:
        kind = "model with manifest" if wanted.startswith("sha256:") else "model named"
        raise TaskSpecError(
            source,
            [
                f"student.base_model: no imported {kind} {wanted!r}; run "
                "`distillery models import` first (or apply with --no-resolve-models)"
            ],
        )
    return row.ref()
