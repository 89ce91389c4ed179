"""The bus edge: the quantizer's stage, subscribed through the stage template."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faststream.nats import NatsRouter

from shared.runtime.service import ServiceContext

from .service import Deps, stages
from .settings import QuantizerSettings


def build_deps(ctx: ServiceContext, settings: QuantizerSettings) -> Deps:
    return Deps(
        db=ctx.db,
        artifacts=ctx.artifacts,
        settings=settings,
        work_dir=Path(settings.work_dir or ctx.settings.home / "quantizer").resolve(),
        worker_slots=asyncio.Semaphore(1),
    )


def build_router(ctx: ServiceContext, settings: QuantizerSettings) -> NatsRouter:
    router = NatsRouter()
    for stage in stages(build_deps(ctx, settings)):
        ctx.add_stage(router, stage)
    return router
