"""Composition root: `faststream run synth_data.main:create_app --factory`, or `distillery up`."""

from __future__ import annotations

from faststream import FastStream

from shared.runtime.service import create_service_app
from shared.settings import PlatformSettings

from .handlers import build_router
from .settings import NAME, SynthDataSettings


def create_app(
    settings: PlatformSettings | None = None,
    service_settings: SynthDataSettings | None = None,
) -> FastStream:
    own = service_settings or SynthDataSettings()
    return create_service_app(NAME, lambda ctx: build_router(ctx, own), settings)
