"""The composition every service shares: broker, database, router, outbox relay, metrics.

A service's `main.create_app(settings=None)` calls `create_service_app` with a function that
builds its router from a `ServiceContext`; nothing is built at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from faststream import FastStream
from faststream.nats import NatsBroker, NatsRouter

from shared.artifacts import AsyncArtifactStore, store_from_settings
from shared.bus import JetStreamPublisher, ensure_stream, make_broker
from shared.bus.broker import bus_credentials
from shared.bus.pull import BatchConsumer
from shared.db import Database
from shared.events import ConsumerPolicy, StreamPolicy
from shared.logs import configure_logging, get_logger
from shared.metrics import serve_metrics
from shared.relay import OutboxRelay
from shared.settings import PlatformSettings

from .stage import Stage, add_stage


class Runner(Protocol):
    """A fetch loop the service runs from startup to shutdown (a batch consumer, the auditor)."""

    name: str

    async def run(self, broker: NatsBroker, stop: asyncio.Event) -> None: ...


@dataclass
class ServiceContext:
    name: str
    settings: PlatformSettings
    db: Database
    broker: NatsBroker
    policy: ConsumerPolicy
    artifacts: AsyncArtifactStore
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    batch_consumers: list[Runner] = field(default_factory=list)

    def add_batch_consumer(self, consumer: BatchConsumer | Runner) -> None:
        """Run a `subscribe_batch` consumer from startup until shutdown, next to the relay."""
        self.batch_consumers.append(consumer)

    def add_stage(self, router: NatsRouter, stage: Stage) -> str:
        """Subscribe one of this service's stages (shared.runtime.stage) to its event."""
        return add_stage(router, stage, service=self.name, db=self.db, policy=self.policy)


def create_service_app(
    name: str,
    build_router: Callable[[ServiceContext], NatsRouter],
    settings: PlatformSettings | None = None,
) -> FastStream:
    settings = settings or PlatformSettings()
    configure_logging(settings.log_level, settings.log_json)
    log = get_logger(name)
    db = Database(settings.resolved_database_url)
    # The service's own bus user (DISTILLERY_NATS_USER/PASSWORD), from the settings it was given.
    credentials = bus_credentials(settings)
    broker = make_broker(settings.nats_url, client_name=name, credentials=credentials)
    ctx = ServiceContext(
        name=name,
        settings=settings,
        db=db,
        broker=broker,
        policy=ConsumerPolicy(
            max_deliver=settings.max_deliver,
            ack_wait_s=settings.ack_wait_s,
            batch_size=1 if db.dialect == "sqlite" else settings.consumer_batch_size,
        ),
        artifacts=AsyncArtifactStore(store_from_settings(settings)),
    )
    broker.include_router(build_router(ctx))
    relay = OutboxRelay(db, JetStreamPublisher(broker), producer=name)
    tasks: list[asyncio.Task[None]] = []
    app = FastStream(broker, logger=None)

    @app.on_startup
    async def declare_stream() -> None:
        policy = StreamPolicy(replicas=settings.stream_replicas)
        await ensure_stream(settings.nats_url, policy, credentials=credentials)

    @app.after_startup
    async def start_relay() -> None:
        tasks.append(asyncio.create_task(relay.run(ctx.stop), name=f"{name}-relay"))
        for consumer in ctx.batch_consumers:
            tasks.append(asyncio.create_task(consumer.run(broker, ctx.stop), name=consumer.name))
        if settings.metrics_port is not None:
            port = serve_metrics(settings.metrics_port)
            log.info("metrics listening", port=port)
        log.info("service started", service=name)

    @app.on_shutdown
    async def stop_relay() -> None:
        ctx.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    @app.after_shutdown
    async def close_db() -> None:
        await db.dispose()
        log.info("service stopped", service=name)

    return app
