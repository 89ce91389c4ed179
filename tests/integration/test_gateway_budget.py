"""A key's per-minute budget shared by gateway replicas through a real NATS KV bucket
(deployer.budget): never more than the budget over all replicas, leases instead of a round trip
per request, refusals with the seconds to the next minute, and requests still admitted (and
counted) when the bus is gone.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats
import pytest

from deployer.budget import SharedBudget, lease_size, rates_bucket
from deployer.instruments import RATE_UNSHARED
from deployer.limits import RateLimiter

START = 1_000_040.0  # 40 s before a minute ends (minutes start at multiples of 60)


class Replica:
    """One gateway's budget on its own NATS connection."""

    def __init__(self, url: str, clock) -> None:
        self.url, self.nc = url, None
        self.calls = 0  # bucket look-ups: one per lease renewal
        # A burst that never binds: the shared count is what is under test.
        self.budget = SharedBudget(
            self._bucket, RateLimiter(burst=100_000), timeout_s=0.5, clock=clock
        )

    async def _bucket(self):
        self.calls += 1
        if self.nc is None:
            self.nc = await nats.connect(self.url, max_reconnect_attempts=0)
        return await rates_bucket(self.nc.jetstream())

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(ConnectionError):  # a killed server's socket is gone
                await self.nc.close()


@pytest.fixture
def clock():
    now = [START]
    return now


async def test_replicas_together_never_pass_the_budget(private_nats, clock):
    a, b = Replica(private_nats.url, lambda: clock[0]), Replica(private_nats.url, lambda: clock[0])
    try:
        # Interleaved and concurrent, from both replicas at once: 150 asks for a budget of 100.
        asks = [r.budget.check("app", 100) for _ in range(75) for r in (a, b)]
        decisions = await asyncio.gather(*asks)
        admitted = [d for d in decisions if d.allowed]
        assert len(admitted) == 100
        refused = [d for d in decisions if not d.allowed]
        assert {d.retry_after_s for d in refused} == {40}
        # Leases, not a round trip per request: a lease is 2 tokens at 100 a minute.
        assert lease_size(100) == 2 and a.calls + b.calls <= 100 // 2 + 2
        # Another key has its own count; the next minute starts a new one.
        assert (await a.budget.check("other", 100)).allowed
        clock[0] = START + 41
        assert (await b.budget.check("app", 100)).allowed
    finally:
        await a.close()
        await b.close()


async def test_a_gone_bus_admits_on_the_replicas_own_bucket_and_counts_it(private_nats, clock):
    replica = Replica(private_nats.url, lambda: clock[0])
    try:
        assert (await replica.budget.check("app", 100)).allowed  # the bus answered
        before = RATE_UNSHARED._value.get()
        private_nats.kill()
        # The lease (2 tokens) covers one more; the renewal after it cannot reach the bus.
        decisions = [await replica.budget.check("app", 100) for _ in range(2)]
        asked = replica.calls
        # The requests right after do not each wait for the bus again; all are counted.
        decisions += [await replica.budget.check("app", 100) for _ in range(3)]
        assert all(d.allowed for d in decisions)
        assert replica.calls == asked
        assert RATE_UNSHARED._value.get() == before + 4
        clock[0] += 6  # then the shared count is tried again
        assert (await replica.budget.check("app", 100)).allowed
        assert replica.calls == asked + 1
    finally:
        await replica.close()
