"""Per-key request limits: a token bucket per key, counted in this gateway process.

This is each replica's burst guard (a second's worth at once, by default). The per-minute
budget that all replicas share is counted in NATS KV (budget.py), behind this bucket; a
gateway run without the bus (LocalLimiter, tests) has this bucket alone.

The clock is injected, so tests drive time instead of sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0  # whole seconds, as the Retry-After header wants; >= 1 when refused


class RateLimiter:
    """`per_minute` requests a minute per key, up to `burst` at once (default: a second's)."""

    def __init__(
        self, *, burst: int | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str, per_minute: int) -> Decision:
        rate = per_minute / 60.0
        capacity = float(self._burst or max(1, math.ceil(rate)))
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Decision(True)
        wait = (1.0 - bucket.tokens) / rate
        return Decision(False, max(1, math.ceil(wait)))
