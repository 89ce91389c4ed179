"""The batched consumer's pull loop: pulled batches, one transaction each (shared.bus.batch).

`Puller` fetches a durable pull consumer's messages without nats-py's `fetch`, which awaits
every message of a batch under its own `asyncio.wait_for` (a task and a timer per message):
profiled on the trace ingest (bench/ingest.py), that fetch took about a fifth of the
consumer's event-loop time. Here one subscription on a private inbox takes every pull's
messages through a callback that only appends them, and a fetch waits on one event per wake-up
under one deadline per batch:

1. what earlier pulls delivered after their fetch returned is handed out first;
2. else a `no_wait` pull for up to `batch`: the server sends what it has at once, then a
   404/408 status when it had fewer;
3. else a pull that lingers up to `wait_s`; the fetch returns with the first messages, and
   whatever that pull brings later is kept for the next fetch (step 1), never dropped.

Held messages are ack-pending on the server, so a crash loses none of them: each comes back
after `ack_wait`, like a batch fetched and never applied.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import suppress

from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError

from shared.db import Database
from shared.events import STREAM_NAME, ConsumerPolicy
from shared.logs import get_logger

from .batch import AllInProgress, BatchHandler, process_batch
from .consumer import E, consumer_config, durable_name
from .heartbeat import heartbeat

log = get_logger(__name__)
_STATUS = "Status"  # the header a JetStream status message carries (404, 408, 409, 100)


class NatsRawMessage:
    """Adapts a nats-py JetStream message (one of a pulled batch) to the policy's RawMessage.

    The delivery count and stream sequence are read when asked for: nats-py parses them out
    of the reply subject, which profiled at about a tenth of the trace consumer's time per
    message, and a batch that commits never asks.
    """

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.subject = msg.subject
        self.body = msg.data

    @property
    def delivery(self) -> int:
        return self._msg.metadata.num_delivered

    @property
    def stream_sequence(self) -> int:
        return self._msg.metadata.sequence.stream

    async def ack(self) -> None:
        await self._msg.ack()

    async def nack(self, delay: float) -> None:
        await self._msg.nak(delay=delay)

    async def reject(self) -> None:
        await self._msg.term()

    async def in_progress(self) -> None:
        await self._msg.in_progress()


class Puller:
    """Batches of one durable pull consumer, on the connection `nc` (see the module doc)."""

    def __init__(self, nc: Client, durable: str, stream: str = STREAM_NAME) -> None:
        self._nc = nc
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()  # under the connection's prefix: this service's own
        self._held: list[Msg] = []
        self._ended = 0  # status messages seen: each ends one pull
        self._woken = asyncio.Event()
        self._sub = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._delivered)

    async def stop(self) -> None:
        if self._sub is not None:
            with suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _delivered(self, msg: Msg) -> None:
        if msg.headers and _STATUS in msg.headers and not msg.data:
            if msg.headers[_STATUS] != "100":  # an idle heartbeat ends nothing
                self._ended += 1
        else:
            self._held.append(msg)
        self._woken.set()

    async def fetch(self, batch: int, wait_s: float) -> list[Msg]:
        """Up to `batch` messages: at once when some are there, else the first ones within
        `wait_s`; [] when none came."""
        if not self._held:
            ended = self._ended
            await self._pull({"batch": batch, "no_wait": True})
            await self._wait(lambda: len(self._held) >= batch or self._ended > ended, wait_s)
        if not self._held:
            await self._pull({"batch": batch, "expires": int(wait_s * 1e9)})
            await self._wait(lambda: bool(self._held), wait_s)
        out, self._held = self._held[:batch], self._held[batch:]
        return out

    async def _pull(self, request: dict) -> None:
        await self._nc.publish(self._next, json.dumps(request).encode(), reply=self._inbox)

    async def _wait(self, done, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._woken.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), left)


class BatchConsumer:
    """A durable pull consumer applying a pulled batch per transaction (see `shared.bus.batch`).

    It runs its own fetch loop (`Puller`) on the broker's connection instead of FastStream's
    batch subscriber (faststream 0.7.8): that one keeps fetching until the batch is full or its
    timeout has passed, catching only nats' own TimeoutError. Close to the deadline nats-py
    raises the builtin one instead (seen here within a few hundred messages at a 50 ms
    timeout); the loop then dies holding the messages it fetched, and they wait out
    `ack_wait` (30 s) before they are redelivered.
    """

    def __init__(
        self,
        event_cls: type[E],
        handler: BatchHandler[E],
        *,
        service: str,
        db: Database,
        policy: ConsumerPolicy,
        batch_size: int,
        poll_s: float,
        claim: bool = True,
    ) -> None:
        self.claim = claim
        self.event_cls = event_cls
        self.handler = handler
        self.service = service
        self.db = db
        self.policy = policy
        self.batch_size = batch_size
        self.poll_s = poll_s
        self.name = durable_name(service, event_cls)

    def consumer_config(self) -> ConsumerConfig:
        return consumer_config(self.name, self.event_cls, self.policy)

    async def run(self, broker: NatsBroker, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; a batch in progress is finished (committed, acked).

        The next batch is fetched while this one is applied: the fetch's round trip overlaps
        the commit's instead of following it. Batches are still applied one after the other.
        """
        connection = await broker.connect()
        await self._declare(connection.jetstream(), stop)
        puller = Puller(connection, self.name)
        await puller.start()
        ahead = asyncio.create_task(self._fetch(puller, stop))
        try:
            while True:
                messages = await ahead  # once `stop` is set, at most one more batch (poll_s)
                if stop.is_set():
                    await self._apply(messages)
                    break
                ahead = asyncio.create_task(self._fetch(puller, stop))
                # The next batch is heartbeated too: a slow commit must not let its
                # ack_wait run out and count a delivery against it.
                async with heartbeat(_FetchedAhead(ahead), self.policy.ack_wait_s / 3):
                    await self._apply(messages)
        finally:
            # Cancelled rather than stopped: a batch fetched ahead and never applied is
            # redelivered after ack_wait; nothing is lost.
            ahead.cancel()
            await puller.stop()

    async def _fetch(self, puller: Puller, stop: asyncio.Event) -> list[Msg]:
        try:
            return await puller.fetch(self.batch_size, self.poll_s)
        except NatsError as exc:  # a broker outage is waited out, not fatal
            log.warning("batch fetch failed", consumer=self.name, error=repr(exc))
            await _sleep_unless(stop, self.poll_s)
            return []

    async def _apply(self, messages: list[Msg]) -> None:
        if not messages:
            return
        try:
            await process_batch(
                [NatsRawMessage(m) for m in messages],
                self.event_cls,
                self.handler,
                service=self.service,
                consumer=self.name,
                db=self.db,
                policy=self.policy,
                claim=self.claim,
            )
        except Exception as exc:  # e.g. a NAK that could not be sent; the loop must go on
            log.warning("batch not settled", consumer=self.name, error=repr(exc))

    async def _declare(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        """The durable consumer, created if it is not there yet (its config is kept if it is,
        as nats-py's pull_subscribe does)."""
        while True:
            try:
                try:
                    await js.consumer_info(STREAM_NAME, self.name)
                except NotFoundError:
                    # Named as well as durable: the create request then goes to
                    # CONSUMER.CREATE.<stream>.<name>.<filter>, the subject a service's bus
                    # user may use (shared.bus.auth), not CONSUMER.DURABLE.CREATE.
                    config = self.consumer_config()
                    config.name = self.name
                    await js.add_consumer(STREAM_NAME, config=config)
                return
            except NatsError as exc:
                if stop.is_set():
                    raise
                log.warning("batch consumer not created yet", consumer=self.name, error=repr(exc))
                await _sleep_unless(stop, self.poll_s)


class _FetchedAhead:
    """The batch a fetch task brought, as one heartbeat target (nothing while it fetches)."""

    def __init__(self, fetch: asyncio.Task) -> None:
        self.fetch = fetch

    async def in_progress(self) -> None:
        if self.fetch.done() and not self.fetch.cancelled() and self.fetch.exception() is None:
            await AllInProgress(self.fetch.result()).in_progress()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
