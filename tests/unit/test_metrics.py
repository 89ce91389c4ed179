"""The Prometheus endpoint serves the shared instruments."""

from __future__ import annotations

import urllib.request

from shared.metrics import MESSAGES, serve_metrics


def test_metrics_endpoint_serves_counters():
    MESSAGES.labels("unit--consumer", "acked").inc(3)
    port = serve_metrics(0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'distillery_messages_total{consumer="unit--consumer",outcome="acked"} 3.0' in text
    assert "distillery_outbox_relayed_total" in text
