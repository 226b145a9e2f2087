"""Prometheus metrics shared by every process (exposed at /metrics or on METRICS_PORT)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS_PUBLISHED = Counter("coproduction_events_published_total", "Outbox events confirmed by the broker")
EVENTS_CONSUMED = Counter("coproduction_events_consumed_total", "Events applied by a consumer", ["queue"])
EVENTS_DUPLICATE = Counter("coproduction_events_duplicate_total", "Duplicate deliveries skipped", ["queue"])
EVENTS_RETRIED = Counter("coproduction_events_retried_total", "Events sent back for a retry", ["queue"])
EVENTS_DEAD = Counter("coproduction_events_dead_lettered_total", "Events sent to the dead letters", ["queue"])
OUTBOX_BACKLOG = Gauge("coproduction_outbox_backlog", "Outbox rows not yet confirmed")
CONSUMER_LAG = Gauge("coproduction_consumer_lag_seconds", "Age of the last event applied", ["queue"])
REQUEST_LATENCY = Histogram("coproduction_http_request_seconds", "HTTP request latency",
                            ["service", "method", "endpoint", "status"])


def serve(port: int | None) -> None:
    if port:
        start_http_server(port)
