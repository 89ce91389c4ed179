"""Bus kernel: broker and stream wiring, the consumer error policy, batches, heartbeats."""

from .batch import BatchHandler, process_batch
from .broker import JetStreamPublisher, ensure_stream, make_broker, stream_config
from .consumer import Delivery, durable_name, process
from .errors import GaveUp, PermanentError, TransientError, UnknownCycleError
from .heartbeat import heartbeat
from .subscribe import subscribe, subscribe_batch

__all__ = [
    "BatchHandler",
    "Delivery",
    "GaveUp",
    "JetStreamPublisher",
    "PermanentError",
    "TransientError",
    "UnknownCycleError",
    "durable_name",
    "ensure_stream",
    "heartbeat",
    "make_broker",
    "process",
    "process_batch",
    "stream_config",
    "subscribe",
    "subscribe_batch",
]
