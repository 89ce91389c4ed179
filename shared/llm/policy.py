"""How hard we press an endpoint: retry timing, and one concurrency gate per endpoint.

The gate is per process and per (base_url, model), so every job, client and cycle in this
process that calls one endpoint shares its `max_concurrency`, instead of each multiplying it.
Each caller brings its own limit and waits while that many requests are in flight, so two task
versions with different limits on one endpoint both hold (the old per-semaphore design let the
first spec's limit win silently).
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per request, and the wait between them.

    The endpoint's Retry-After wins when sent (it knows its own rate window), bounded by
    `cap_s` so a misbehaving server cannot park a job for an hour; otherwise exponential
    backoff with jitter, so many clients retrying together spread out.
    """

    max_attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_s < 0 or self.cap_s < 0:
            raise ValueError(f"invalid retry policy: {self}")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.cap_s, max(0.0, retry_after))
        backoff = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return backoff * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds an endpoint asked us to wait: `retry-after-ms` (OpenAI), `retry-after` as
    seconds or as an HTTP date; None when absent or unreadable (our own backoff applies)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - (time.time() if now is None else now)


class Gate:
    """Requests in flight to one endpoint from this process."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._waiters: list[asyncio.Future[None]] = []

    @asynccontextmanager
    async def slot(self, limit: int) -> AsyncIterator[None]:
        while self.in_flight >= limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            # Everyone re-checks against their own limit; a few dozen wake-ups per release
            # cost nothing next to an HTTP request.
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


# Futures belong to one event loop; a process normally has one, tests have one per test.
_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Gate]] = (
    weakref.WeakKeyDictionary()
)


def gate_for(base_url: str, model: str) -> Gate:
    """This process's gate for the endpoint; call it from the event loop that will use it."""
    gates = _GATES.setdefault(asyncio.get_running_loop(), {})
    return gates.setdefault(f"{base_url.rstrip('/')}|{model}", Gate())
