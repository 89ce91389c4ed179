"""Prometheus metrics: the shared instruments and the endpoint every process can expose."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

MESSAGES = Counter(
    "distillery_messages_total",
    "Messages handled by a consumer, by outcome",
    ["consumer", "outcome"],
)
HANDLE_SECONDS = Histogram(
    "distillery_handle_seconds", "Time spent in a consumer's handler", ["consumer"]
)
RELAYED = Counter("distillery_outbox_relayed_total", "Outbox rows published to JetStream")


def serve_metrics(port: int, addr: str = "127.0.0.1") -> int:
    """Expose /metrics on `port` (0 picks a free one); returns the bound port."""
    server, _ = start_http_server(port, addr=addr)
    return server.server_port
