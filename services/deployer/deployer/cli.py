"""`distillery rollout status|promote|rollback|pause|resume` and `distillery gateway keys ...`.

Mounted by the main CLI through the `distillery.cli` entry-point group (`rollout =
"deployer.cli:rollout"`, `gateway = "deployer.cli:gateway"`); importing this module builds
nothing but the Typer apps. A command's `rollout.changed` goes into the outbox as producer
"deployer", in the same transaction as the recorded stage; the deployer service's relay
sends it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from shared.cli.common import (
    HomeOption,
    Target,
    database_errors,
    fail,
    parse_uuid,
    require_database,
    resolve,
    stdout,
)

rollout = typer.Typer(
    help="Student rollouts: shadow, A/B, full, rolled back.", no_args_is_help=True
)
gateway = typer.Typer(help="The gateway's API keys.", no_args_is_help=True)
keys = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)
gateway.add_typer(keys, name="keys")

DeploymentId = Annotated[str, typer.Argument(help="The deployment id `rollout status` shows.")]
Reason = Annotated[str, typer.Option("--reason", help="Why; recorded and published.")]


def _target(home: Path | None) -> Target:
    target = resolve(home)
    require_database(target)
    return target


async def _run(target: Target, fn) -> Any:
    from shared.artifacts import AsyncArtifactStore, store_from_settings
    from shared.db import Database
    from shared.settings import PlatformSettings

    from .service import Deps
    from .settings import DeployerSettings

    settings = PlatformSettings(home=target.home)
    runtime_root = (target.runtime or {}).get("artifact_root")
    if "artifact_root" not in settings.model_fields_set and runtime_root:
        settings = settings.model_copy(update={"artifact_root": Path(runtime_root)})
    db = Database(target.database_url)
    try:
        artifacts = AsyncArtifactStore(store_from_settings(settings))
        return await fn(Deps(db=db, artifacts=artifacts, settings=DeployerSettings()))
    finally:
        await db.dispose()


@rollout.command("status")
def status(home: HomeOption = None) -> None:
    """The latest rollouts, newest first: stage, share, paused, why."""
    from .repository import recent_deployments

    target = _target(home)
    with database_errors(target):
        found = asyncio.run(_run(target, lambda deps: recent_deployments(deps.db)))
    out = stdout()
    if not found:
        out.print("no rollouts yet")
        return
    for d in found:
        paused = " (paused)" if d.rollout.paused else ""
        out.print(
            f"{d.deployment_id}  {d.task_name:<20} {d.rollout.stage:<12} {d.share:>5.0%}{paused}  "
            f"{d.candidate_kind} {d.candidate.sha256[:12]}  {d.rollout.reason[:80]}",
            markup=False,
        )


def _operate(deployment: str, action: str, reason: str, home: Path | None) -> None:
    from shared.bus import PermanentError

    from .service import operate

    deployment_id: UUID = parse_uuid(deployment, "deployment id")
    target = _target(home)
    with database_errors(target):
        try:
            after = asyncio.run(
                _run(target, lambda deps: operate(deps, deployment_id, action, reason))  # type: ignore[arg-type]
            )
        except PermanentError as exc:
            raise fail(str(exc)) from None
    paused = ", paused" if after.paused else ""
    stdout().print(f"{deployment_id}: {after.stage}{paused}", markup=False)


@rollout.command("promote")
def promote(deployment: DeploymentId, reason: Reason, home: HomeOption = None) -> None:
    """Move to the next step now (shadow -> A/B -> ... -> full)."""
    _operate(deployment, "promote", reason, home)


@rollout.command("rollback")
def rollback(deployment: DeploymentId, reason: Reason, home: HomeOption = None) -> None:
    """Take the candidate out of traffic."""
    _operate(deployment, "rollback", reason, home)


@rollout.command("pause")
def pause(deployment: DeploymentId, reason: Reason, home: HomeOption = None) -> None:
    """Hold the current step: no automatic promotion or rollback until resumed."""
    _operate(deployment, "pause", reason, home)


@rollout.command("resume")
def resume(deployment: DeploymentId, reason: Reason, home: HomeOption = None) -> None:
    """Let the automatic rule act again."""
    _operate(deployment, "resume", reason, home)


Tasks = Annotated[list[str] | None, typer.Option("--task", help="A task it may call; repeat.")]
Rpm = Annotated[int | None, typer.Option(help="Requests per minute; default: the gateway's.")]


@keys.command("create")
def create_key(
    key_id: Annotated[str, typer.Argument(help="A name for the key (logs, limits, A/B).")],
    task: Tasks = None,
    admin: Annotated[bool, typer.Option(help="Every task, and admin.")] = False,
    rpm: Rpm = None,
    home: HomeOption = None,
) -> None:
    """Create a key; its secret is printed once and stored only as a hash."""
    from .keys import issue
    from .repository import KeyExists, add_key

    if not task and not admin:
        raise fail("give at least one --task, or --admin")
    secret, record = issue(key_id, task or (), admin=admin, requests_per_minute=rpm)
    target = _target(home)
    with database_errors(target):
        try:
            asyncio.run(_run(target, lambda deps: add_key(deps.db, record)))
        except KeyExists as exc:
            raise fail(str(exc)) from None
    stdout().print(secret, markup=False)


@keys.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's name.")], home: HomeOption = None
) -> None:
    """Revoke a key: every gateway refuses it within its key refresh interval."""
    from .repository import revoke_key as revoke

    target = _target(home)
    with database_errors(target):
        done = asyncio.run(_run(target, lambda deps: revoke(deps.db, key_id)))
    if not done:
        raise fail(f"no live key {key_id!r}")
    stdout().print(f"{key_id} revoked", markup=False)
