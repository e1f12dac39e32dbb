"""``/metrics`` in Prometheus text format.

The hot paths count in plain ints on
:class:`realtime.http.counters.Counters` (an attribute increment costs
~30 ns; a prometheus-client ``Counter.inc`` takes a lock).  A custom
collector turns them into metric families only when scraped.  The
registry is built once with the application object
(:func:`build_registry`), not on the first scrape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from realtime.http.counters import Counters
from realtime.hub import Hub
from realtime.protocol.close import CloseCode


class MetricsSource(Protocol):
    """What the collector reads: the application object
    (:class:`realtime.api.app.App`), whose ``last_reload`` is replaced on
    every reload (so the source is read at each scrape, not copied)."""

    metrics: Counters
    hub: Hub
    last_reload: dict[str, Any]


class _StateCollector(Collector):
    def __init__(self, state: MetricsSource) -> None:
        self.state = state

    def collect(self) -> Iterator:
        state = self.state
        c: Counters = state.metrics
        yield GaugeMetricFamily("realtime_connections_open", "Open WebSocket connections",
                                value=len(state.hub.connections))
        fam = CounterMetricFamily("realtime_handshakes", "WebSocket handshakes by result", labels=["result"])
        for result, n in sorted(c.handshakes.items()):
            fam.add_metric([result], n)
        yield fam
        fam = CounterMetricFamily("realtime_closes", "WebSocket closes by code", labels=["code"])
        for label, n in close_labels(c.closes).items():
            fam.add_metric([label], n)
        yield fam
        yield CounterMetricFamily("realtime_messages_in", "Client messages received", value=c.messages_in)
        yield CounterMetricFamily("realtime_publishes", "Messages published", value=c.publishes)
        yield CounterMetricFamily("realtime_deliveries", "Messages offered to subscribers", value=c.deliveries)
        yield CounterMetricFamily("realtime_slow_consumer_closes", "Connections closed with 4009",
                                  value=c.closes.get(CloseCode.SLOW_CONSUMER, 0))
        fam = CounterMetricFamily("realtime_refreshes", "In-band token refreshes", labels=["result"])
        for result, n in sorted(c.refreshes.items()):
            fam.add_metric([result], n)
        yield fam
        fam = CounterMetricFamily("realtime_token_requests", "Token endpoint requests", labels=["grant", "result"])
        for (grant, result), n in sorted(c.token_requests.items()):
            fam.add_metric([grant, result], n)
        yield fam
        fam = CounterMetricFamily("realtime_reloads", "Config reloads by result", labels=["result"])
        for result, n in sorted(c.reloads.items()):
            fam.add_metric([result], n)
        yield fam
        last = state.last_reload
        if last:
            yield GaugeMetricFamily("realtime_last_reload_timestamp_seconds", "When the last reload ran",
                                    value=last.get("time", 0))
            yield GaugeMetricFamily("realtime_last_reload_success", "1 if the last reload applied",
                                    value=1 if last.get("result") == "ok" else 0)


#: The close codes that get a label of their own: the ones SPEC §4 and
#: RFC 6455 name (:class:`CloseCode`).  A peer may send any of ~4,000
#: codes; one label per value would let a client grow every scrape.
KNOWN_CLOSE_CODES = frozenset(int(code) for code in CloseCode)


def close_labels(closes: Mapping[int, int]) -> dict[str, int]:
    """Close counts by label: each known code, the rest summed as ``other``."""
    out: dict[str, int] = {}
    other = 0
    for code, n in sorted(closes.items()):
        if code in KNOWN_CLOSE_CODES:
            out[str(code)] = n
        else:
            other += n
    if other:
        out["other"] = other
    return out


def build_registry(source: MetricsSource) -> CollectorRegistry:
    """A registry whose one collector reads ``source`` at each scrape."""
    registry = CollectorRegistry()
    registry.register(_StateCollector(source))
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST
