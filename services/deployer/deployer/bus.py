"""The gateway's one NATS connection: traces and feedback out, the routing bucket in, the
shared rate counts both ways.

Connected lazily and reconnecting forever (nats-py), as the deployer's bus identity. Events go
straight to JetStream with their id as Nats-Msg-Id, not through the outbox: a trace is not a
state change of the gateway, and a database write per request would put the database on the
request path. The trace buffer in front of this bounds what waits, and counts what is dropped.
"""

from __future__ import annotations

import asyncio

import nats
from nats.aio.client import Client
from nats.js.kv import KeyValue

from shared.bus.broker import MSG_ID_HEADER, BusCredentials, connect_options
from shared.events import STREAM_NAME, Event

from .budget import rates_bucket
from .routing import routes_bucket


class NatsBus:
    def __init__(self, url: str, credentials: BusCredentials | None, timeout_s: float = 2.0):
        self._url = url
        self._credentials = credentials
        self._timeout_s = timeout_s
        self._nc: Client | None = None
        self._rates: KeyValue | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        async with self._lock:
            if self._nc is None:
                self._nc = await nats.connect(
                    self._url,
                    name="deployer-gateway",
                    connect_timeout=self._timeout_s,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    **connect_options(self._url, self._credentials),
                )
            return self._nc

    async def publish_event(self, event: Event) -> None:
        js = (await self.client()).jetstream()
        await js.publish(
            event.subject,
            event.model_dump_json().encode(),
            timeout=self._timeout_s,
            stream=STREAM_NAME,
            headers={MSG_ID_HEADER: str(event.event_id)},
        )

    async def routes(self) -> KeyValue:
        return await routes_bucket((await self.client()).jetstream())

    async def rates(self) -> KeyValue:
        if self._rates is None:  # looked up once: every request that renews a lease needs it
            self._rates = await rates_bucket((await self.client()).jetstream())
        return self._rates

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None
            self._rates = None
