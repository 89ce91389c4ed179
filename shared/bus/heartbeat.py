"""Keep a long-running message from being redelivered while its handler still works on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Protocol

from shared.logs import get_logger

log = get_logger(__name__)


class InProgress(Protocol):
    async def in_progress(self) -> None: ...


@asynccontextmanager
async def heartbeat(message: InProgress, interval_s: float) -> AsyncIterator[None]:
    """Send JetStream `+WPI` every `interval_s` (keep it well under the consumer's ack_wait)."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await message.in_progress()
            except Exception as exc:  # a missed beat is survivable; ack_wait gives slack
                log.warning("heartbeat failed", error=repr(exc))

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
