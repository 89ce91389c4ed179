"""Composition root of the control plane: `python -m shared.runtime.serve deployer.main:create_app`.

The gateway (data plane) is a separate process: `uvicorn deployer.gateway_main:create_app
--factory`, so it scales out on its own and a control-plane restart never drops a request.
"""

from __future__ import annotations

from faststream import FastStream

from shared.runtime.service import create_service_app
from shared.settings import PlatformSettings

from .handlers import build_router
from .settings import NAME, DeployerSettings


def create_app(
    settings: PlatformSettings | None = None,
    service_settings: DeployerSettings | None = None,
) -> FastStream:
    own = service_settings or DeployerSettings()
    return create_service_app(NAME, lambda ctx: build_router(ctx, own), settings)
