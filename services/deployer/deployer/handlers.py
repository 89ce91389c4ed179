"""The bus edge: the deployer's stage, subscribed through the stage template."""

from __future__ import annotations

from faststream.nats import NatsRouter

from shared.runtime.service import ServiceContext

from .service import Deps, stages
from .settings import DeployerSettings


def build_deps(ctx: ServiceContext, settings: DeployerSettings) -> Deps:
    return Deps(db=ctx.db, artifacts=ctx.artifacts, settings=settings)


def build_router(ctx: ServiceContext, settings: DeployerSettings) -> NatsRouter:
    router = NatsRouter()
    for stage in stages(build_deps(ctx, settings)):
        ctx.add_stage(router, stage)
    return router
