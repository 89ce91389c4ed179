"""The gateway's Prometheus instruments. Labels stay low-cardinality: endpoint and model kind,
never a task or key (a label per customer would grow the series without bound)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Sub-millisecond buckets: the gateway's own overhead is measured in them.
_FAST = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUEST_SECONDS = Histogram(
    "distillery_gateway_request_seconds",
    "Gateway requests, arrival to last byte, by endpoint, routed model kind and status class",
    ["endpoint", "kind", "status"],
    buckets=_FAST,
)
TTFT_SECONDS = Histogram(
    "distillery_gateway_ttft_seconds",
    "Streamed chat requests: arrival to the first content chunk",
    ["kind"],
    buckets=_FAST,
)
TOKENS_PER_SECOND = Histogram(
    "distillery_gateway_tokens_per_second",
    "Completion tokens per second of upstream time, per answered request",
    ["kind"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000),
)
UPSTREAM_ERRORS = Counter(
    "distillery_gateway_upstream_errors_total",
    "Upstream calls that failed, by model kind and what the client got (502/504/4xx/5xx)",
    ["kind", "status"],
)
REFUSED = Counter(
    "distillery_gateway_refused_total",
    "Requests the gateway refused itself (401, 403, 404, 413, 429, 400)",
    ["status"],
)
SHADOW_SKIPPED = Counter(
    "distillery_gateway_shadow_skipped_total",
    "Shadow copies not sent because too many were already in flight",
)
RATE_UNSHARED = Counter(
    "distillery_gateway_rate_unshared_total",
    "Requests admitted on this replica's own rate bucket alone: the shared count (NATS KV) "
    "did not answer in time",
)
