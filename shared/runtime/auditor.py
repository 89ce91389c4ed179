"""The stray auditor as a process of its own (`shared.bus.audit`): a kernel service with no
stage, only the whole-stream consumer and the outbox relay that carries its dead letters.

    python -m shared.runtime.serve shared.runtime.auditor:create_app

It connects as the bus identity "auditor" (DISTILLERY_NATS_USER / DISTILLERY_NATS_PASSWORD),
whose grants (shared/bus/auth.py) are exactly that consumer and the dead-letter subject.
"""

from __future__ import annotations

from faststream import FastStream
from faststream.nats import NatsRouter

from shared.bus.audit import AUDITOR, StrayAuditor
from shared.settings import PlatformSettings

from .service import ServiceContext, create_service_app


def build_router(ctx: ServiceContext) -> NatsRouter:
    ctx.add_batch_consumer(StrayAuditor(ctx.db))
    return NatsRouter()


def create_app(settings: PlatformSettings | None = None) -> FastStream:
    return create_service_app(AUDITOR, build_router, settings)
