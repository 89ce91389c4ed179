"""A key's per-minute request budget, counted in one place every gateway replica shares.

Where, and why there: a NATS KV bucket (RATES_BUCKET), because every gateway already holds a
NATS connection for its routes and traces; Redis would be one more server to run, secure and
watch for this alone. The bus is a round trip away, and the gateway's added-latency budget is
~2 ms, so a replica does not ask per request. It takes a lease of tokens from the key's
counter for the current minute (a compare-and-set on `<key>.<minute>`) and spends the lease
locally; only the request that finds its lease empty pays the round trip.

What that promises:
- never over: leases come out of one counter that stops at the key's budget, so all replicas
  together admit at most `per_minute` requests in a clock minute;
- possibly under: tokens leased to a replica that the key's traffic no longer reaches lie
  unused until the minute ends, at most one lease per replica (a lease is a fiftieth of the
  budget, 1 to 20 requests);
- bursts: in front of the shared count, each replica keeps its own token bucket (limits.py,
  a second's worth at once), so a minute's budget cannot arrive in one instant.

When the bus cannot answer within `timeout_s`, the request is admitted on the replica's own
bucket alone and counted (`distillery_gateway_rate_unshared_total`), and so are the requests
of the next UNSHARED_S seconds without asking again: a slow or absent NATS must neither fail
requests nor slow each of them by the timeout. The minute's counters expire with the
bucket's TTL (two minutes).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.errors import Error as JetStreamError
from nats.js.kv import KeyValue

from shared.events.values import RATES_BUCKET
from shared.logs import get_logger

from .instruments import RATE_UNSHARED
from .limits import Decision, RateLimiter

log = get_logger(__name__)

WINDOW_S = 60
# After the bus failed to answer, requests skip the shared count this long: one request pays
# the timeout, the ones after it are not each slowed by it.
UNSHARED_S = 5.0
_TRIES = 8  # compare-and-set attempts against other replicas before giving up on this request


class Limiter(Protocol):
    async def check(self, key: str, per_minute: int) -> Decision: ...


class LocalLimiter:
    """One replica's own bucket only: a gateway that runs alone (and the gateway's tests)."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def check(self, key: str, per_minute: int) -> Decision:
        return self.limiter.check(key, per_minute)


@dataclass
class _Lease:
    window: int
    left: int


class Contended(Exception):
    """Other replicas kept winning the compare-and-set."""


async def rates_bucket(js: JetStreamContext) -> KeyValue:
    try:
        return await js.key_value(RATES_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=RATES_BUCKET, history=1, ttl=2 * WINDOW_S)


def lease_size(per_minute: int) -> int:
    return max(1, min(20, per_minute // 50))


class SharedBudget:
    def __init__(
        self,
        bucket: Callable[[], Awaitable[KeyValue]],
        local: RateLimiter,
        *,
        timeout_s: float = 0.5,
        clock: Callable[[], float] = time.time,  # wall time: replicas share the minute
    ) -> None:
        self._bucket = bucket
        self._local = local
        self._timeout_s = timeout_s
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._renewing: dict[str, asyncio.Lock] = {}
        self._spent: dict[str, int] = {}  # key -> the minute its shared count was found spent
        self._warned = 0.0
        self._unshared_until = 0.0

    async def check(self, key: str, per_minute: int) -> Decision:
        burst = self._local.check(key, per_minute)
        if not burst.allowed:
            return burst
        if self._spend(key):
            return Decision(True)
        if self._clock() < self._unshared_until:
            RATE_UNSHARED.inc()
            return Decision(True)
        if self._known_spent(key):  # no round trip to learn it again
            return self._refusal(self._clock())
        # One renewal per key at a time in this replica: requests that arrive meanwhile wait
        # for it and spend the new lease, rather than racing each other for the counter.
        async with self._renewing.setdefault(key, asyncio.Lock()):
            if self._spend(key):
                return Decision(True)
            if self._known_spent(key):
                return self._refusal(self._clock())
            return await self._renew(key, per_minute)

    def _known_spent(self, key: str) -> bool:
        return self._spent.get(key) == int(self._clock() // WINDOW_S)

    def _spend(self, key: str) -> bool:
        lease = self._leases.get(key)
        if lease is None or lease.window != int(self._clock() // WINDOW_S) or lease.left <= 0:
            return False
        lease.left -= 1
        return True

    async def _renew(self, key: str, per_minute: int) -> Decision:
        now = self._clock()
        window = int(now // WINDOW_S)
        try:
            granted = await asyncio.wait_for(self._take(key, window, per_minute), self._timeout_s)
        except (TimeoutError, NatsError, JetStreamError, Contended, OSError) as exc:
            RATE_UNSHARED.inc()
            self._unshared_until = now + UNSHARED_S
            if now - self._warned > WINDOW_S:  # once a minute, not once a request
                self._warned = now
                log.warning("rate budget not shared: admitted on this replica's", error=repr(exc))
            return Decision(True)
        if granted == 0:
            self._spent[key] = window
            return self._refusal(now)
        self._leases[key] = _Lease(window, granted - 1)
        return Decision(True)

    @staticmethod
    def _refusal(now: float) -> Decision:
        """Refused until the next minute: Retry-After counts the seconds to it."""
        return Decision(False, max(1, math.ceil((int(now // WINDOW_S) + 1) * WINDOW_S - now)))

    async def _take(self, key: str, window: int, per_minute: int) -> int:
        """Tokens leased from the key's counter for `window`: 0 when it is spent."""
        kv = await self._bucket()
        name = f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.{window}"
        for _ in range(_TRIES):
            try:
                entry = await kv.get(name)
                used, revision = int(entry.value or b"0"), entry.revision
            except KeyNotFoundError:
                used, revision = 0, None
            grant = min(lease_size(per_minute), per_minute - used)
            if grant <= 0:
                return 0
            try:
                if revision is None:
                    await kv.create(name, str(used + grant).encode())
                else:
                    await kv.update(name, str(used + grant).encode(), last=revision)
                return grant
            except KeyWrongLastSequenceError:  # another replica took a lease first: re-read
                continue
        raise Contended(f"{_TRIES} compare-and-set attempts on {name} lost")
