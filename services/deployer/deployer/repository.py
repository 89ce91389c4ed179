"""Every query the deployer makes on its tables.

Deployment rows change inside the same transaction as the `rollout.changed` event that
announces the change (the outbox), so the recorded stage and what was announced never differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select, update

from shared.db import Database, UnitOfWork
from shared.events.base import ArtifactRef

from .keys import ApiKey
from .models import ApiKeyRow, DeploymentRow
from .rollout import Rollout

ACTIVE = ("shadow", "ab")


@dataclass(frozen=True)
class Deployment:
    deployment_id: UUID
    cycle_id: UUID | None
    task_name: str
    task_spec: ArtifactRef
    candidate: ArtifactRef
    candidate_kind: str
    rollout: Rollout
    share: float
    revision: int
    engine: str | None = None
    base_url: str | None = None
    served_model: str | None = None
    variant: str | None = None
    measured: ArtifactRef | None = None  # the quantizer's report: the replies to reproduce


class StaleRevision(Exception):
    """The rollout changed since it was read; read it again and decide again."""


def _deployment(row: DeploymentRow) -> Deployment:
    return Deployment(
        deployment_id=UUID(row.deployment_id),
        cycle_id=UUID(row.cycle_id) if row.cycle_id else None,
        task_name=row.task_name,
        task_spec=ArtifactRef.model_validate(row.task_spec),
        candidate=ArtifactRef.model_validate(row.candidate),
        candidate_kind=row.candidate_kind,
        rollout=Rollout(row.stage, row.step, row.paused, row.reason),  # type: ignore[arg-type]
        share=row.share,
        revision=row.revision,
        engine=row.engine,
        base_url=row.base_url,
        served_model=row.served_model,
        variant=row.variant,
        measured=ArtifactRef.model_validate(row.measured) if row.measured else None,
    )


def add_deployment(uow: UnitOfWork, values: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    uow.session.add(DeploymentRow(**values, revision=1, created_at=now, updated_at=now))


async def active_deployments(uow: UnitOfWork, task_name: str) -> list[Deployment]:
    rows = await uow.session.scalars(
        select(DeploymentRow).where(
            DeploymentRow.task_name == task_name, DeploymentRow.stage.in_(ACTIVE)
        )
    )
    return [_deployment(r) for r in rows]


async def get_deployment(db: Database, deployment_id: UUID) -> Deployment | None:
    async with db.uow() as uow:
        row = await uow.session.scalar(
            select(DeploymentRow).where(DeploymentRow.deployment_id == str(deployment_id))
        )
        return _deployment(row) if row is not None else None


async def unfinished(db: Database) -> list[Deployment]:
    """Rollouts to resume after a restart: every one still in shadow or A/B."""
    async with db.uow() as uow:
        rows = await uow.session.scalars(
            select(DeploymentRow).where(DeploymentRow.stage.in_(ACTIVE)).order_by(DeploymentRow.id)
        )
        return [_deployment(r) for r in rows]


async def save_rollout(
    uow: UnitOfWork, deployment: Deployment, rollout: Rollout, share: float
) -> None:
    """Record the new state if nobody changed it since `deployment` was read."""
    result = await uow.session.execute(
        update(DeploymentRow)
        .where(
            DeploymentRow.deployment_id == str(deployment.deployment_id),
            DeploymentRow.revision == deployment.revision,
        )
        .values(
            stage=rollout.stage,
            step=rollout.step,
            paused=rollout.paused,
            reason=rollout.reason[:8000],
            share=share,
            revision=deployment.revision + 1,
            updated_at=datetime.now(UTC),
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleRevision(str(deployment.deployment_id))


# --- API keys ---


class KeyExists(ValueError):
    pass


async def add_key(db: Database, key: ApiKey) -> None:
    """Raises KeyExists when the name is taken (also by a revoked key: names stay unique in
    logs, limits and A/B assignments)."""
    from sqlalchemy.exc import IntegrityError

    try:
        await _add_key(db, key)
    except IntegrityError:
        raise KeyExists(f"a key named {key.key_id!r} exists; choose another name") from None


async def _add_key(db: Database, key: ApiKey) -> None:
    async with db.uow() as uow:
        uow.session.add(
            ApiKeyRow(
                key_id=key.key_id,
                key_hash=key.key_hash,
                tasks=sorted(key.tasks),
                admin=key.admin,
                requests_per_minute=key.requests_per_minute,
                created_at=datetime.now(UTC),
                revoked_at=None,
            )
        )
        await uow.commit()


async def revoke_key(db: Database, key_id: str) -> bool:
    async with db.uow() as uow:
        result = await uow.session.execute(
            update(ApiKeyRow)
            .where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        await uow.commit()
        return result.rowcount == 1  # type: ignore[attr-defined]


async def live_keys(db: Database) -> list[ApiKey]:
    async with db.uow() as uow:
        rows = await uow.session.scalars(select(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None)))
        return [
            ApiKey(r.key_id, r.key_hash, frozenset(r.tasks), r.admin, r.requests_per_minute)
            for r in rows
        ]


async def recent_deployments(db: Database, limit: int = 20) -> list[Deployment]:
    async with db.uow() as uow:
        rows = await uow.session.scalars(
            select(DeploymentRow).order_by(DeploymentRow.id.desc()).limit(limit)
        )
        return [_deployment(r) for r in rows]


async def to_serve(db: Database) -> list[Deployment]:
    """Every deployment that needs a running server: the unfinished ones, and each task's
    latest full one (the student that is live)."""
    async with db.uow() as uow:
        rows = list(
            await uow.session.scalars(
                select(DeploymentRow)
                .where(DeploymentRow.stage.in_((*ACTIVE, "full")))
                .order_by(DeploymentRow.id)
            )
        )
        latest_full = {r.task_name: r for r in rows if r.stage == "full"}
        return [_deployment(r) for r in rows if r.stage in ACTIVE or latest_full[r.task_name] is r]


async def set_served(
    db: Database, deployment_id: UUID, engine: str, base_url: str, served_model: str
) -> None:
    """Where the deployment's server answers now (a restart may move it to another port)."""
    async with db.uow() as uow:
        await uow.session.execute(
            update(DeploymentRow)
            .where(DeploymentRow.deployment_id == str(deployment_id))
            .values(engine=engine, base_url=base_url, served_model=served_model)
        )
        await uow.commit()
