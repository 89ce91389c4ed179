"""NATS broker and JetStream stream wiring, built by factories from settings."""

from __future__ import annotations

import nats
from faststream.nats import JStream, NatsBroker
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared.events import STREAM_NAME, STREAM_SUBJECTS, StreamPolicy
from shared.events.base import Event
from shared.logs import get_logger

log = get_logger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"


def make_broker(nats_url: str, *, client_name: str) -> NatsBroker:
    # Reconnect forever: a broker restart must be waited out, not crash the service.
    return NatsBroker(
        nats_url,
        name=client_name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        logger=None,
    )


def stream_config(policy: StreamPolicy) -> StreamConfig:
    return StreamConfig(
        name=STREAM_NAME,
        subjects=list(STREAM_SUBJECTS),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=policy.max_age_s,
        duplicate_window=policy.duplicate_window_s,
        num_replicas=policy.replicas,
    )


def stream_ref() -> JStream:
    # Subscribers name the stream but never declare it: FastStream would declare it with only
    # their own subjects. `ensure_stream` owns the declaration.
    return JStream(STREAM_NAME, declare=False)


async def ensure_stream(nats_url: str, policy: StreamPolicy | None = None) -> None:
    """Create the stream, or bring an existing one to the declared config."""
    config = stream_config(policy or StreamPolicy())
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(STREAM_NAME)
        except NotFoundError:
            await js.add_stream(config)
            log.info("stream created", stream=STREAM_NAME)
            return
        current = info.config
        if current.num_replicas != config.num_replicas:
            # Replication is an operator's decision (deploy/ runs R3); a service started with
            # a default must never scale a production stream down. Keep what is there.
            log.warning(
                "stream replicas differ; keeping the existing setting",
                existing=current.num_replicas,
                declared=config.num_replicas,
            )
            config.num_replicas = current.num_replicas
        if (
            sorted(current.subjects or []) != sorted(config.subjects or [])
            or current.duplicate_window != config.duplicate_window
        ):
            await js.update_stream(config)
            log.info("stream updated", stream=STREAM_NAME)
    finally:
        await nc.close()


class JetStreamPublisher:
    """Publishes an encoded event and waits for the stream's acknowledgement."""

    def __init__(self, broker: NatsBroker, timeout_s: float = 5.0) -> None:
        self.broker = broker
        self.timeout_s = timeout_s

    async def publish(self, subject: str, payload: bytes, event_id: str) -> None:
        await self.broker.publish(
            payload,
            subject,
            headers={MSG_ID_HEADER: event_id, "content-type": "application/json"},
            stream=STREAM_NAME,
            timeout=self.timeout_s,
        )

    async def publish_event(self, event: Event) -> None:
        """Direct publish, for producers outside the platform. Services use the outbox."""
        await self.publish(event.subject, event.model_dump_json().encode(), str(event.event_id))
