"""The application object: the current config snapshot and the services
built from it, typed.  Route handlers and sessions receive one :class:`App`.

Where it lives, and why (issue 17): the concrete class sits in the
``api`` layer, the composition point just below ``net``, because it
holds parts of every layer under it (settings, key ring, hub, store, the
OAuth and OAuth 1.0a services).  The layers below never import it: each
names only what it reads as a ``typing.Protocol`` of its own
(:class:`realtime.oauth.services.OAuthApp`,
:class:`realtime.oauth1.credentials.OAuth1App`,
:class:`realtime.api.metrics.MetricsSource`), which :class:`App`
satisfies, so the cores receive plain values and import nothing upward.

It holds plain values only.  The trio things of a running server (the
TLS context, the set of live sessions, the reload-done event, the start
time, the Redis broker task) belong to ``realtime.net.server.Server``;
the worker-thread offloads and the provider HTTP client are built there
and reach the cores inside :class:`OAuthServices`.

``settings`` is replaced whole on reload (and ``keyring`` when keys
change); nothing else holds a reference to an older snapshot for longer
than one request.  The OAuth services are built once at start: what they
read from the settings (the login rate) applies from the next start, as
before.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
from prometheus_client import CollectorRegistry

from realtime.api.admin_metrics import AdminCollector
from realtime.api.metrics import build_registry
from realtime.api.publish_limit import PrincipalLimit
from realtime.api.webhooks import WebhookStats
from realtime.config.settings import Settings
from realtime.http.counters import Counters
from realtime.hub import Hub
from realtime.hub import admin as hub_admin
from realtime.protocol.close import CloseCode
from realtime.session.streams import StreamDirectory, Streams, TicketBook, TicketStore
from realtime.store.calls import StoreCalls
from realtime.oauth.services import OAuthServices
from realtime.oauth1.credentials import OAuth1Services
from realtime.tokens.keyring import KeyRing, RevokedSet


@attrs.define(eq=False)
class App:
    settings: Settings
    keyring: KeyRing
    revoked: RevokedSet
    hub: Hub
    store: StoreCalls
    oauth: OAuthServices
    oauth1: OAuth1Services
    metrics: Counters = attrs.field(factory=Counters)
    # The last reload's outcome: {"result": "ok"|"error"|"skipped", "time",
    # "trigger"[, "errors"]}, for /metrics and the tests.
    last_reload: dict[str, Any] = attrs.field(factory=dict)
    metrics_registry: CollectorRegistry = attrs.field(init=False)
    # /api/publish buckets per principal ([api] publish_rate), built on first
    # use and again when a reload changes the rate; time is injectable.
    api_publish_limit: PrincipalLimit | None = None
    monotonic: Callable[[], float] = time.monotonic
    # This node's id (the broker's, with one), when it
    # started (monotonic), and the in-process idempotency keys of
    # /api/publish: key -> (monotonic deadline, answer body; b"" while the
    # first publish is under way).
    node: str = attrs.field(factory=lambda: secrets.token_hex(8))
    started: float = attrs.field(factory=time.monotonic)
    idempotency: dict[str, tuple[float, bytes]] = attrs.field(factory=dict)
    # Server API calls by (endpoint, HTTP status), for /metrics.
    api_calls: Counter[tuple[str, int]] = attrs.field(factory=Counter)
    # Webhooks (SPEC §12): the shell's emit (realtime.net.webhooks), None
    # without [[webhook]] tables; and the delivery counters.
    webhook_sink: Callable[[str, dict[str, Any]], None] | None = None
    webhook_stats: WebhookStats = attrs.field(factory=WebhookStats)
    # SSE (SPEC §13): this node's live streams by id (for their refresh), and
    # where tickets wait (in process; the server swaps in Redis with a broker).
    streams: Streams = attrs.field(factory=Streams)
    tickets: TicketStore = attrs.field(factory=lambda: TicketBook(time.monotonic))
    # Every node's streams (Redis, with a broker), so a refresh can reach another node.
    stream_directory: StreamDirectory | None = None
    # /api/ticket and /api/streams/ID/refresh buckets ([api] publish_rate), by kind.
    stream_limits: dict[str, PrincipalLimit] = attrs.field(factory=dict)
    # With [store] url: the [store] key_file bytes, and the signing key ring
    # lives in the store (realtime.store.signing_keys); None: state_dir/keys.
    store_key: bytes | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self.metrics_registry = build_registry(self)
        self.metrics_registry.register(AdminCollector(self))  # server API and webhooks

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        """A webhook event (``connect``, ``publish``...); nothing without hooks."""
        sink = self.webhook_sink
        if sink is not None:
            if isinstance(data.get("conn_id"), int):  # the hub's number; the API's id
                data["conn_id"] = f"{self.node}-{data['conn_id']}"
            sink(type_, data)

    def revoke_access(self, jti: str, exp: float, *, share: bool = True) -> int:
        """Mark an access token revoked and close its live sockets with 4003.

        Returns how many live connections were closed.  Callers persist the
        revocation in the store themselves; this keeps the hot-path set and
        the sockets in step.  With a remote broker the revocation also goes
        to every other node (``share``; the broker passes ``False`` for the
        ones it brings in).
        """
        self.revoked.add(jti, exp)
        if share:
            self.hub.share_revocation(jti, exp)
        closed = 0
        for conn in list(self.hub.connections.by_jti(jti)):
            conn.withdraw(CloseCode.REVOKED, "token revoked")
            closed += 1
        return closed

    def apply_cutoff(self, sub: str, client_id: str, issued_before: float) -> int:
        """Refuse every token of ``sub`` (of ``client_id``; ``""``: any app)
        issued before ``issued_before`` and close the live sockets opened
        with one, with 4003; returns how many were closed.  Callers persist
        the cut-off in the store themselves, as for :meth:`revoke_access`."""
        self.revoked.cut(sub, client_id, issued_before)
        closed = 0
        for conn in hub_admin.select(self.hub, sub=sub, client_id=client_id or None):
            if conn.claims.iat < issued_before:
                conn.withdraw(CloseCode.REVOKED, "tokens revoked")
                closed += 1
        return closed
