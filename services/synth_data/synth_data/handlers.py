"""The bus edge: decode, call the use case. Errors follow shared.bus's one policy."""

from __future__ import annotations

from faststream.nats import NatsRouter

from shared.bus import Delivery, subscribe
from shared.events.catalog import CycleIterationRequested, CycleRequested, TaskRegistered
from shared.runtime.service import ServiceContext

from . import service
from .settings import SynthDataSettings


def build_router(ctx: ServiceContext, settings: SynthDataSettings) -> NatsRouter:
    router = NatsRouter()
    deps = service.Deps(db=ctx.db, artifacts=ctx.artifacts, settings=settings)

    async def on_task(event: TaskRegistered, delivery: Delivery) -> None:
        await service.register_task(deps, event, delivery)

    async def on_cycle(event: CycleRequested, delivery: Delivery) -> None:
        await service.run_cycle(deps, event, delivery)

    async def on_iteration(event: CycleIterationRequested, delivery: Delivery) -> None:
        await service.run_cycle(deps, event, delivery)

    common = {"service": ctx.name, "db": ctx.db, "policy": ctx.policy}
    subscribe(router, TaskRegistered, on_task, **common)
    subscribe(router, CycleRequested, on_cycle, **common)
    subscribe(router, CycleIterationRequested, on_iteration, **common)
    return router
