"""The bus edge: the deployer's stages, subscribed through the stage template, and its control
loop (servers and routes), run next to the outbox relay."""

from __future__ import annotations

from pathlib import Path

from faststream.nats import NatsRouter

from shared.runtime.service import ServiceContext

from .controller import Controller, ControlLoop
from .service import Deps, stages
from .settings import DeployerSettings


def build_deps(ctx: ServiceContext, settings: DeployerSettings) -> Deps:
    return Deps(db=ctx.db, artifacts=ctx.artifacts, settings=settings)


def build_router(ctx: ServiceContext, settings: DeployerSettings) -> NatsRouter:
    router = NatsRouter()
    for stage in stages(build_deps(ctx, settings)):
        ctx.add_stage(router, stage)
    work_dir = Path(settings.work_dir or ctx.settings.home / "deployer").resolve()
    controller = Controller(ctx.db, ctx.artifacts, settings, work_dir)
    # Not a batch consumer, but run the same way (from start-up to shutdown, with the
    # service's broker and stop event); the kernel has no other hook for a service's loop.
    ctx.add_batch_consumer(ControlLoop(controller, settings.control_interval_s))  # type: ignore[arg-type]
    return router
