"""``/metrics`` for the server API and webhooks: calls by
endpoint and status, webhook deliveries, retries, failures, drops, the
queue and the delivery latency.  A collector of its own beside
:mod:`realtime.api.metrics`, reading plain counters at each scrape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

__all__ = ["AdminCollector"]


class AdminCollector(Collector):
    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        app = self.app
        fam = CounterMetricFamily("realtime_api_calls", "Server API calls by endpoint and HTTP status",
                                  labels=["endpoint", "status"])
        for (endpoint, status), n in sorted(app.api_calls.items()):
            fam.add_metric([endpoint, str(status)], n)
        yield fam
        w = app.webhook_stats
        yield CounterMetricFamily("realtime_webhook_events", "Webhook events queued", value=w.enqueued)
        yield CounterMetricFamily("realtime_webhook_deliveries", "Webhook events delivered (2xx)", value=w.delivered)
        yield CounterMetricFamily("realtime_webhook_retries", "Webhook attempts after the first", value=w.retries)
        yield CounterMetricFamily("realtime_webhook_failures", "Webhook events given up (4xx or max_attempts)",
                                  value=w.failed)
        yield CounterMetricFamily("realtime_webhook_dropped", "Webhook events dropped: the queue was full",
                                  value=w.dropped)
        yield GaugeMetricFamily("realtime_webhook_queued", "Webhook events waiting",
                                value=w.enqueued - w.delivered - w.failed)
        yield SummaryMetricFamily("realtime_webhook_latency_seconds", "Seconds from an event to its 2xx",
                                  count_value=w.latency_count, sum_value=w.latency_sum)
