"""Composition root of the gateway: `uvicorn deployer.gateway_main:create_app --factory`, or,
under `distillery up`, `python -m shared.runtime.serve deployer.gateway_main:create_service`
(the same app behind uvicorn, on DEPLOYER_GATEWAY_HOST:DEPLOYER_GATEWAY_PORT).

Keys come from the deployer's table, re-read every `key_refresh_s` (a revoked key is refused
within that on every replica); routes from the NATS KV bucket (routing.py); each key's
request budget is counted in another bucket all replicas share (budget.py); traces leave
through the bus, never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.applications import Starlette

from shared.artifacts import AsyncArtifactStore, store_from_settings
from shared.bus.broker import bus_credentials
from shared.db import Database
from shared.events.base import ArtifactRef
from shared.logs import configure_logging, get_logger
from shared.settings import PlatformSettings
from shared.tasks import TaskSpec, spec_from_json

from .assemble import gateway_deps
from .budget import SharedBudget
from .bus import NatsBus
from .gateway import RoutingTable, create_gateway
from .keys import KeyRing
from .limits import RateLimiter
from .repository import live_keys
from .routing import RouteFollower
from .settings import DeployerSettings

log = get_logger(__name__)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def refresh_keys(db: Database, keys: KeyRing, every_s: float, stop: asyncio.Event) -> None:
    try:
        while not stop.is_set():
            try:
                keys.replace(await live_keys(db))
            except Exception as exc:  # keep serving with the last keys read; say so
                log.error("keys not refreshed", error=repr(exc))
            await pause(stop, every_s)
    finally:
        await db.dispose()


async def follow_routes(bus: NatsBus, follower: RouteFollower, stop: asyncio.Event) -> None:
    try:
        while not stop.is_set():
            try:
                await follower.follow(await bus.routes(), stop)
            except Exception as exc:  # the bus away: keep the last routes, try again
                log.error("routes not followed", error=repr(exc))
                await pause(stop, 1.0)
    finally:
        await bus.close()


def create_app(
    settings: PlatformSettings | None = None, service_settings: DeployerSettings | None = None
) -> Starlette:
    platform = settings or PlatformSettings()
    own = service_settings or DeployerSettings()
    configure_logging(platform.log_level, platform.log_json)
    db = Database(platform.resolved_database_url)
    artifacts = AsyncArtifactStore(store_from_settings(platform))
    bus = NatsBus(platform.nats_url, bus_credentials(platform), own.trace_publish_timeout_s)
    keys, routes = KeyRing(), RoutingTable()

    async def load_spec(ref: ArtifactRef) -> TaskSpec:
        return spec_from_json(await artifacts.get_bytes(ref))

    follower = RouteFollower(routes, load_spec, platform.allowed_teacher_hosts)
    shared = SharedBudget(bus.rates, RateLimiter(burst=own.burst), timeout_s=own.rate_timeout_s)
    deps = gateway_deps(own, keys, routes, bus, limiter=shared)
    deps.background.append(lambda stop: refresh_keys(db, keys, own.key_refresh_s, stop))
    deps.background.append(lambda stop: follow_routes(bus, follower, stop))
    return create_gateway(deps)


class GatewayProcess:
    """The gateway as `shared.runtime.serve` runs a service: `await run()` until SIGTERM."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port

    async def run(self) -> None:
        import uvicorn  # the server only; the app above never needs it

        # Within the supervisor's 10 s between SIGTERM and SIGKILL, so buffered traces flush.
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_config=None,
            timeout_graceful_shutdown=5,
        )
        log.info("gateway listening", url=f"http://{self.host}:{self.port}")
        await uvicorn.Server(config).serve()


def create_service(
    settings: PlatformSettings | None = None, service_settings: DeployerSettings | None = None
) -> GatewayProcess:
    own = service_settings or DeployerSettings()
    return GatewayProcess(create_app(settings, own), own.gateway_host, own.gateway_port)
