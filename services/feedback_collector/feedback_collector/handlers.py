"""The bus edge: the two batched ingest consumers, the stages (rollout steps, datasets as
drift references, failed cycles, the teacher's relabels), and the periodic jobs: retention,
the rollout figures' reporter, the feedback datasets and the drift watch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress

from faststream.nats import NatsBroker, NatsRouter

from shared.bus import subscribe_batch
from shared.events import FeedbackRecorded, TrafficLogged
from shared.logs import get_logger
from shared.runtime.service import ServiceContext

from . import relabels
from .datasets import publish_feedback
from .rollouts import report_rollouts
from .service import Deps, ingest_feedback, ingest_traces, stages, sweep
from .settings import NAME, FeedbackSettings
from .watch import Watch

log = get_logger(__name__)


class Every:
    """Runs `job` every `every_s` for as long as the service runs. A failed round is logged
    and retried next round: ingest must not stop for a periodic job."""

    def __init__(self, name: str, job: Callable[[], Awaitable[object]], every_s: float) -> None:
        self.name = f"{NAME}-{name}"
        self.job = job
        self.every_s = every_s

    async def run(self, broker: NatsBroker, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                done = await self.job()
                if done:
                    log.info(self.name, done=done if isinstance(done, int) else len(done))
            except Exception as exc:
                log.warning(f"{self.name} failed", error=repr(exc))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)


def build_router(ctx: ServiceContext, settings: FeedbackSettings) -> NatsRouter:
    deps = Deps(db=ctx.db, settings=settings, artifacts=ctx.artifacts)
    batch = {
        "service": NAME,
        "db": ctx.db,
        "policy": ctx.policy,
        "batch_size": settings.batch_size,
        "poll_s": settings.poll_s,
    }
    # Spelled out per event (not a loop) so the catalog test can read what this service consumes.
    # A trace row is keyed by its event id (inserted ON CONFLICT DO NOTHING): it is its own
    # inbox row, and the hottest path in the system writes each trace once instead of twice.
    ctx.add_batch_consumer(subscribe_batch(TrafficLogged, ingest_traces, claim=False, **batch))
    ctx.add_batch_consumer(subscribe_batch(FeedbackRecorded, ingest_feedback, **batch))
    ctx.add_batch_consumer(Every("retention", lambda: sweep(deps), settings.sweep_every_s))
    ctx.add_batch_consumer(
        Every("rollout-metrics", lambda: report_rollouts(deps), settings.metrics_every_s)
    )
    ctx.add_batch_consumer(
        Every("feedback-datasets", lambda: publish_feedback(deps), settings.build_every_s)
    )
    ctx.add_batch_consumer(Every("drift", Watch(deps).run_once, settings.drift_every_s))
    router = NatsRouter()
    for stage in [*stages(deps), relabels.stage(deps)]:
        ctx.add_stage(router, stage)
    return router
