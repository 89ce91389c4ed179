"""Wiring the gateway's parts from settings: one function, used by the entrypoint and tests."""

from __future__ import annotations

from .budget import Limiter, LocalLimiter
from .chat import Chat
from .gateway import GatewayDeps, RoutingTable
from .keys import KeyRing
from .limits import RateLimiter
from .settings import DeployerSettings
from .traces import Publisher, TraceBuffer
from .upstream import Upstream


def gateway_deps(
    settings: DeployerSettings,
    keys: KeyRing,
    routes: RoutingTable,
    publisher: Publisher,
    limiter: Limiter | None = None,
) -> GatewayDeps:
    traces = TraceBuffer(
        publisher, settings.trace_buffer, timeout_s=settings.trace_publish_timeout_s
    )
    upstream = Upstream(
        timeout_s=settings.upstream_timeout_s,
        connect_timeout_s=settings.upstream_connect_timeout_s,
        max_connections=settings.max_upstream_connections,
    )
    return GatewayDeps(
        settings=settings,
        keys=keys,
        routes=routes,
        limiter=limiter or LocalLimiter(RateLimiter(burst=settings.burst)),
        traces=traces,
        chat=Chat(upstream, traces, settings.shadows_per_server),
    )
