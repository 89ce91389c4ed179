"""The bus edge: synth.completed in; dataset.published or cycle.failed out, via the outbox."""

from __future__ import annotations

from faststream.nats import NatsRouter

from shared.bus import Delivery, subscribe
from shared.events.catalog import SynthCompleted
from shared.runtime.service import ServiceContext

from .pii import load_extra
from .service import NAME, Deps, curate_synth_batch
from .settings import CurationSettings


def build_router(ctx: ServiceContext, settings: CurationSettings) -> NatsRouter:
    load_extra(settings.extra_scrubbers)
    deps = Deps(db=ctx.db, artifacts=ctx.artifacts, settings=settings)
    router = NatsRouter()

    async def on_synth_completed(event: SynthCompleted, delivery: Delivery) -> None:
        await curate_synth_batch(deps, event, delivery.consumer, heartbeat=delivery.heartbeat())

    subscribe(
        router, SynthCompleted, on_synth_completed, service=NAME, db=ctx.db, policy=ctx.policy
    )
    return router
