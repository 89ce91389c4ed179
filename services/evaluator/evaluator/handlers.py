"""The bus edge: the evaluator's stages, subscribed through the stage template."""

from __future__ import annotations

import asyncio
from pathlib import Path

from faststream.nats import NatsRouter

from shared.runtime.service import ServiceContext

from .results import ArtifactReader, ResultsCache
from .service import Deps, stages
from .settings import EvaluatorSettings


def build_deps(ctx: ServiceContext, settings: EvaluatorSettings) -> Deps:
    reader = ArtifactReader(ctx.artifacts)
    return Deps(
        db=ctx.db,
        artifacts=ctx.artifacts,
        reader=reader,
        cache=ResultsCache(ctx.db, reader),
        settings=settings,
        work_dir=Path(settings.work_dir or ctx.settings.home / "evaluator").resolve(),
        operator_hosts=tuple(ctx.settings.allowed_teacher_hosts),
        worker_slots=asyncio.Semaphore(settings.max_concurrent_evaluations),
    )


def build_router(ctx: ServiceContext, settings: EvaluatorSettings) -> NatsRouter:
    router = NatsRouter()
    for stage in stages(build_deps(ctx, settings)):
        ctx.add_stage(router, stage)
    return router
