"""``/metrics`` in Prometheus text format.

The hot paths count in plain ints on :class:`Counters` (an attribute
increment costs ~30 ns; a prometheus-client ``Counter.inc`` takes a lock).
A custom collector turns them into metric families only when scraped.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import TYPE_CHECKING, Iterator

import attrs
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from realtime.app import ServerState


@attrs.define
class Counters:
    handshakes: Tally = attrs.field(factory=Tally)  # by result: ok, unauthorized, forbidden, bad_request
    closes: Tally = attrs.field(factory=Tally)  # by close code
    messages_in: int = 0
    publishes: int = 0
    deliveries: int = 0
    refreshes: Tally = attrs.field(factory=Tally)  # ok / error
    token_requests: Tally = attrs.field(factory=Tally)  # (grant, result)
    reloads: Tally = attrs.field(factory=Tally)  # ok / error


class _StateCollector(Collector):
    def __init__(self, state: "ServerState") -> None:
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
        for code, n in sorted(c.closes.items()):
            fam.add_metric([str(code)], n)
        yield fam
        yield CounterMetricFamily("realtime_messages_in", "Client messages received", value=c.messages_in)
        yield CounterMetricFamily("realtime_publishes", "Messages published", value=c.publishes)
        yield CounterMetricFamily("realtime_deliveries", "Messages offered to subscribers", value=c.deliveries)
        yield CounterMetricFamily("realtime_slow_consumer_closes", "Connections closed with 4009",
                                  value=c.closes.get(4009, 0))
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


def render(state: "ServerState") -> tuple[bytes, str]:
    registry = state.extras.get("metrics_registry")
    if registry is None:
        registry = CollectorRegistry()
        registry.register(_StateCollector(state))
        state.extras["metrics_registry"] = registry
    return generate_latest(registry), CONTENT_TYPE_LATEST
