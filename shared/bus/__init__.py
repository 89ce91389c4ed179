"""Bus kernel: broker and stream wiring, the consumer error policy, heartbeats."""

from .broker import JetStreamPublisher, ensure_stream, make_broker, stream_config
from .consumer import Delivery, durable_name, process
from .errors import GaveUp, PermanentError, TransientError
from .heartbeat import heartbeat
from .subscribe import subscribe

__all__ = [
    "Delivery",
    "GaveUp",
    "JetStreamPublisher",
    "PermanentError",
    "TransientError",
    "durable_name",
    "ensure_stream",
    "heartbeat",
    "make_broker",
    "process",
    "stream_config",
    "subscribe",
]
