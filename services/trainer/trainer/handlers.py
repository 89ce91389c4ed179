"""The bus edge: the trainer's stages, subscribed through the stage template."""

from __future__ import annotations

from faststream.nats import NatsRouter

from shared.runtime.service import ServiceContext

from .service import Deps, stages
from .settings import TrainerSettings


def build_router(ctx: ServiceContext, settings: TrainerSettings) -> NatsRouter:
    router = NatsRouter()
    work_dir = (settings.work_dir or ctx.settings.home / "trainer").resolve()
    deps = Deps(ctx.db, ctx.artifacts, settings, work_dir)
    for stage in stages(deps):
        ctx.add_stage(router, stage)
    return router
