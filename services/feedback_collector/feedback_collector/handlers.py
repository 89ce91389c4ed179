"""The bus edge: the two batched ingest consumers, the rollout stage, the retention sweep and
the rollout figures' reporter."""

from __future__ import annotations

import asyncio
from contextlib import suppress

from faststream.nats import NatsBroker, NatsRouter

from shared.bus import subscribe_batch
from shared.events import FeedbackRecorded, TrafficLogged
from shared.logs import get_logger
from shared.runtime.service import ServiceContext

from .service import Deps, ingest_feedback, ingest_traces, report_rollouts, stages, sweep
from .settings import NAME, FeedbackSettings

log = get_logger(__name__)


class Sweeper:
    """Runs retention every `sweep_every_s` for as long as the service runs."""

    name = f"{NAME}-retention"

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def run(self, broker: NatsBroker, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                deleted = await sweep(self.deps)
                if deleted:
                    log.info("retention", deleted=deleted)
            except Exception as exc:  # the next sweep retries; ingest must not stop
                log.warning("retention sweep failed", error=repr(exc))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.deps.settings.sweep_every_s)


class Reporter:
    """Sends `rollout.measured` every `metrics_every_s` for as long as the service runs."""

    name = f"{NAME}-rollout-metrics"

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def run(self, broker: NatsBroker, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await report_rollouts(self.deps)
            except Exception as exc:  # the next round retries; ingest must not stop
                log.warning("rollout metrics not sent", error=repr(exc))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.deps.settings.metrics_every_s)


def build_router(ctx: ServiceContext, settings: FeedbackSettings) -> NatsRouter:
    deps = Deps(db=ctx.db, settings=settings)
    batch = {
        "service": NAME,
        "db": ctx.db,
        "policy": ctx.policy,
        "batch_size": settings.batch_size,
        "poll_s": settings.poll_s,
    }
    # Spelled out per event (not a loop) so the catalog test can read what this service consumes.
    ctx.add_batch_consumer(subscribe_batch(TrafficLogged, ingest_traces, **batch))
    ctx.add_batch_consumer(subscribe_batch(FeedbackRecorded, ingest_feedback, **batch))
    ctx.add_batch_consumer(Sweeper(deps))
    ctx.add_batch_consumer(Reporter(deps))
    router = NatsRouter()
    for stage in stages(deps):
        ctx.add_stage(router, stage)
    return router
