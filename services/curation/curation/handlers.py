"""The bus edge: each stage of `service.stages` subscribed through the stage template."""

from __future__ import annotations

from faststream.nats import NatsRouter

from shared.runtime.service import ServiceContext
from shared.text.pii import load_extra

from . import service
from .settings import CurationSettings


def build_router(ctx: ServiceContext, settings: CurationSettings) -> NatsRouter:
    load_extra(settings.extra_scrubbers)
    deps = service.Deps(
        db=ctx.db,
        artifacts=ctx.artifacts,
        settings=settings,
        operator_hosts=ctx.settings.allowed_teacher_hosts,
    )
    router = NatsRouter()
    for stage in service.stages(deps):
        ctx.add_stage(router, stage)
    return router
