"""The server's counters, as plain ints and tallies.

The hot paths (the WebSocket session, the HTTP API, the token endpoint,
reload) count here; :mod:`realtime.api.metrics` turns the numbers into
Prometheus metric families only when ``/metrics`` is scraped.  An
attribute increment costs ~30 ns where a prometheus-client
``Counter.inc`` takes a lock.  The class lives this low (next to the
HTTP primitives, below every layer that counts) so that no counting
layer has to import the ``api`` layer above it.
"""

from __future__ import annotations

from collections import Counter as Tally

import attrs


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
