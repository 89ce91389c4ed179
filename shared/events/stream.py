"""The one JetStream stream every event lives in, and the consumer defaults."""

from __future__ import annotations

from dataclasses import dataclass

STREAM_NAME = "DISTILLERY"
STREAM_SUBJECTS = ("distillery.>",)


@dataclass(frozen=True)
class StreamPolicy:
    # The relay may publish twice after a crash; JetStream drops a repeated Nats-Msg-Id
    # inside this window, and the consumers' inbox covers anything older.
    duplicate_window_s: float = 120.0
    replicas: int = 1
    max_age_s: float = 14 * 24 * 3600.0


@dataclass(frozen=True)
class ConsumerPolicy:
    max_deliver: int = 6
    ack_wait_s: float = 30.0
    # Delays for transient failures: base * 2**(delivery-1), capped.
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 60.0
    # Messages fetched, and handled concurrently, per pull. bench/bus.py: on PostgreSQL 4 beat
    # 1 and 16; SQLite serialises writers, so services on SQLite use 1 (see create_service_app).
    batch_size: int = 4

    def backoff(self, delivery: int) -> float:
        return min(self.backoff_cap_s, self.backoff_base_s * 2 ** max(0, delivery - 1))
