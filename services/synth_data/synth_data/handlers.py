"""The bus edge: the service's stages, each subscribed through the stage template."""

from __future__ import annotations

from faststream.nats import NatsRouter

from shared.runtime.service import ServiceContext

from . import service
from .settings import SynthDataSettings


def build_router(ctx: ServiceContext, settings: SynthDataSettings) -> NatsRouter:
    router = NatsRouter()
    deps = service.Deps(
        db=ctx.db,
        artifacts=ctx.artifacts,
        settings=settings,
        operator_hosts=ctx.settings.allowed_teacher_hosts,
    )
    for stage in service.stages(deps):
        ctx.add_stage(router, stage)
    return router
