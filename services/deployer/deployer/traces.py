"""Traces leave the gateway through a bounded buffer, so the bus never slows a request.

A request only `offer`s its `traffic.logged` event: a non-blocking put. When the buffer is
full (the bus slow or gone for long enough) the event is dropped and counted in
`distillery_gateway_traces_dropped_total{reason="overflow"}`; a trace the bus kept refusing is
counted under reason="publish_failed". Nothing is dropped silently. A drainer task publishes
in small concurrent batches; the event id is the Nats-Msg-Id, so a retried publish whose first
attempt did land is dropped by JetStream, not stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from prometheus_client import Counter, Gauge

from shared.events import Event
from shared.logs import get_logger

log = get_logger(__name__)

TRACES_DROPPED = Counter(
    "distillery_gateway_traces_dropped_total",
    "traffic/feedback events the gateway dropped instead of waiting for the bus",
    ["reason"],
)
TRACES_PUBLISHED = Counter(
    "distillery_gateway_traces_published_total", "events the gateway's buffer published"
)
TRACES_WAITING = Gauge("distillery_gateway_traces_waiting", "events in the gateway's buffer")


class Publisher(Protocol):
    async def publish_event(self, event: Event) -> None: ...


class TraceBuffer:
    def __init__(
        self,
        publisher: Publisher,
        maxsize: int,
        *,
        timeout_s: float = 2.0,
        attempts: int = 3,
        batch: int = 64,
    ) -> None:
        self._publisher = publisher
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._batch = batch

    def offer(self, event: Event) -> bool:
        """Queue `event` for the bus without waiting; False (and counted) if the buffer is full."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            TRACES_DROPPED.labels("overflow").inc()
            return False
        TRACES_WAITING.set(self._queue.qsize())
        return True

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set, then flush what is left (one attempt each)."""
        while not stop.is_set():
            getter = asyncio.ensure_future(self._queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                break
            events = [getter.result()]
            while len(events) < self._batch and not self._queue.empty():
                events.append(self._queue.get_nowait())
            await asyncio.gather(*(self._publish(e, self._attempts) for e in events))
            TRACES_WAITING.set(self._queue.qsize())
        rest = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        await asyncio.gather(*(self._publish(e, 1) for e in rest))

    async def _publish(self, event: Event, attempts: int) -> None:
        for attempt in range(attempts):
            try:
                await asyncio.wait_for(self._publisher.publish_event(event), self._timeout_s)
            except Exception as exc:  # any bus failure: retry, then count the drop
                if attempt + 1 == attempts:
                    TRACES_DROPPED.labels("publish_failed").inc()
                    log.warning("trace dropped", subject=event.subject, error=repr(exc))
                    return
                await asyncio.sleep(0.1 * 2**attempt)
            else:
                TRACES_PUBLISHED.inc()
                return
