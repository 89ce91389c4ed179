"""The bus edge: which events the evaluator consumes, and the use case each one runs."""

from __future__ import annotations

from faststream.nats import NatsRouter

from shared.bus import Delivery, subscribe
from shared.events.catalog import QuantizationCompleted, TrainingCompleted
from shared.runtime.service import ServiceContext

from .service import NAME, Evaluator
from .settings import EvaluatorSettings


def build_router(ctx: ServiceContext, settings: EvaluatorSettings) -> NatsRouter:
    router = NatsRouter()
    evaluator = Evaluator(ctx, settings)

    async def on_training(event: TrainingCompleted, delivery: Delivery) -> None:
        await evaluator.on_training(event, delivery)

    async def on_quantized(event: QuantizationCompleted, delivery: Delivery) -> None:
        await evaluator.on_quantized(event, delivery)

    subscribe(router, TrainingCompleted, on_training, service=NAME, db=ctx.db, policy=ctx.policy)
    subscribe(
        router, QuantizationCompleted, on_quantized, service=NAME, db=ctx.db, policy=ctx.policy
    )
    return router
