"""Composition root: `python -m shared.runtime.serve curation.main:create_app`."""

from __future__ import annotations

from faststream import FastStream

from shared.runtime.service import ServiceContext, create_service_app
from shared.settings import PlatformSettings

from .handlers import build_router
from .service import NAME
from .settings import CurationSettings


def create_app(
    settings: PlatformSettings | None = None,
    service_settings: CurationSettings | None = None,
) -> FastStream:
    curation_settings = service_settings or CurationSettings()

    def router(ctx: ServiceContext):
        return build_router(ctx, curation_settings)

    return create_service_app(NAME, router, settings)
