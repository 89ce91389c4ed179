"""The bus edge: dataset.published → Trainer.train_dataset."""

from __future__ import annotations

from faststream.nats import NatsRouter

from shared.bus import Delivery, subscribe
from shared.events.catalog import DatasetPublished
from shared.runtime.service import ServiceContext
from trainer.progress import NAME
from trainer.service import Trainer
from trainer.settings import TrainerSettings


def build_router(ctx: ServiceContext, settings: TrainerSettings) -> NatsRouter:
    router = NatsRouter()
    work_dir = settings.work_dir or ctx.settings.home / "trainer"
    trainer = Trainer(ctx.db, ctx.artifacts, settings, work_dir.resolve())

    async def on_dataset(event: DatasetPublished, delivery: Delivery) -> None:
        await trainer.train_dataset(
            event,
            consumer=delivery.consumer,
            heartbeat=delivery.heartbeat(),
            last_delivery=delivery.number >= ctx.policy.max_deliver,
        )

    # One message at a time: a second training on the same machine would only slow both.
    subscribe(
        router,
        DatasetPublished,
        on_dataset,
        service=NAME,
        db=ctx.db,
        policy=ctx.policy,
        batch_size=1,
    )
    return router
