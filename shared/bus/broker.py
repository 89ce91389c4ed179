"""NATS broker and JetStream stream wiring, built by factories from settings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import nats
from faststream.nats import JStream, NatsBroker, NatsUserPassword
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from pydantic import SecretStr

from shared.events import STREAM_NAME, STREAM_SUBJECTS, StreamPolicy
from shared.events.base import Event
from shared.logs import get_logger
from shared.settings import PlatformSettings

log = get_logger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
DEFAULT_INBOX = "_INBOX"


@dataclass(frozen=True)
class BusCredentials:
    """Who this process is on the bus (see shared/bus/auth.py); the password is a SecretStr,
    so a repr or a log line shows `**********`."""

    user: str
    password: SecretStr


def inbox_prefix(identity: str | None) -> str:
    """Replies come back under a prefix only this identity may subscribe to. "ops" keeps
    the default: CLI commands also open plain connections that cannot choose one."""
    if not identity or identity == "ops":
        return DEFAULT_INBOX
    return f"{DEFAULT_INBOX}_{identity}"


def bus_credentials(settings: PlatformSettings | None = None) -> BusCredentials | None:
    """DISTILLERY_NATS_USER / DISTILLERY_NATS_PASSWORD, or None: connect without a user."""
    settings = settings or PlatformSettings()
    if settings.nats_user is None or settings.nats_password is None:
        return None
    return BusCredentials(settings.nats_user, settings.nats_password)


def _identity(nats_url: str, credentials: BusCredentials | None) -> str | None:
    # A user in the URL (`nats://ops:…@host`) is honoured by nats-py as is; only its inbox
    # prefix has to follow it.
    if credentials is not None:
        return credentials.user
    return urlsplit(nats_url.split(",", 1)[0].strip()).username


def connect_options(nats_url: str, credentials: BusCredentials | None) -> dict[str, Any]:
    """nats-py connect() options for this identity; the password only in the returned dict."""
    options: dict[str, Any] = {"inbox_prefix": inbox_prefix(_identity(nats_url, credentials))}
    if credentials is not None:
        options["user"] = credentials.user
        options["password"] = credentials.password.get_secret_value()
    return options


def make_broker(
    nats_url: str, *, client_name: str, credentials: BusCredentials | None = None
) -> NatsBroker:
    """`credentials` None: the environment's (DISTILLERY_NATS_USER / _PASSWORD), if any, so
    a service started by `distillery up` or a container connects as itself."""
    credentials = credentials or bus_credentials()
    security = None
    if credentials is not None:
        secret = credentials.password.get_secret_value()
        security = NatsUserPassword(credentials.user, secret)
    # Reconnect forever: a broker restart must be waited out, not crash the service.
    return NatsBroker(
        nats_url,
        name=client_name,
        security=security,
        inbox_prefix=inbox_prefix(_identity(nats_url, credentials)),
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


async def _log_bus_error(exc: Exception) -> None:
    # nats-py's default prints a traceback per error; a refused request is one line here.
    log.warning("nats error", error=str(exc))


async def _stream_info(js, attempts: int = 8):
    # A whole platform starting at once on two cores (every service importing torch, every
    # connection checked against a bcrypt hash, `distillery demo` importing the student) can
    # keep the server from answering within the client's 5 s for half a minute (measured: a
    # collector exited after 4 attempts, ~26 s); a slow start, not a reason to exit. ~70 s.
    for attempt in range(1, attempts):
        try:
            return await js.stream_info(STREAM_NAME)
        except NatsTimeoutError:
            log.warning("stream info timed out; asking again", attempt=attempt)
            await asyncio.sleep(attempt)
    return await js.stream_info(STREAM_NAME)


async def ensure_stream(
    nats_url: str, policy: StreamPolicy | None = None, credentials: BusCredentials | None = None
) -> None:
    """Create the stream, or bring an existing one to the declared config.

    `credentials` None: the environment's, as for `make_broker`. Only "ops" may update the
    stream; any other identity finding it different warns and carries on with it.
    """
    config = stream_config(policy or StreamPolicy())
    credentials = credentials or bus_credentials()
    nc = await nats.connect(
        nats_url,
        connect_timeout=5,
        max_reconnect_attempts=3,
        error_cb=_log_bus_error,
        **connect_options(nats_url, credentials),
    )
    try:
        js = nc.jetstream()
        try:
            info = await _stream_info(js)
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
            try:
                await js.update_stream(config)
            except NatsTimeoutError:
                # The server answers a refused request with nothing: no reply comes.
                log.warning(
                    "stream differs from the declared config and was not updated "
                    "(not permitted for this identity, or no answer); keeping it",
                    stream=STREAM_NAME,
                )
                return
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
