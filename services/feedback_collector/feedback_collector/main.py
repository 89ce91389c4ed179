"""Composition root: `python -m shared.runtime.serve feedback_collector.main:create_app`."""

from __future__ import annotations

from faststream import FastStream

from shared.runtime.service import create_service_app
from shared.settings import PlatformSettings

from .handlers import build_router
from .settings import NAME, FeedbackSettings


def create_app(
    settings: PlatformSettings | None = None,
    service_settings: FeedbackSettings | None = None,
) -> FastStream:
    own = service_settings or FeedbackSettings()
    return create_service_app(NAME, lambda ctx: build_router(ctx, own), settings)
