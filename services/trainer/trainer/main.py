"""Composition root: `python -m shared.runtime.serve trainer.main:create_app`."""

from __future__ import annotations

from faststream import FastStream

from shared.runtime.service import ServiceContext, create_service_app
from shared.settings import PlatformSettings
from trainer.handlers import build_router
from trainer.progress import NAME
from trainer.settings import TrainerSettings


def create_app(
    settings: PlatformSettings | None = None, service_settings: TrainerSettings | None = None
) -> FastStream:
    def build(ctx: ServiceContext):
        return build_router(ctx, service_settings or TrainerSettings())

    return create_service_app(NAME, build, settings)
