"""What the parts of :class:`realtime.net.redis.broker.RedisBroker` share:
its constants, the per-channel :class:`Watch`, and :class:`BrokerState`.

The broker is composed of parts that each hold the same
:class:`BrokerState` value: :class:`realtime.net.redis.delivery.Delivery`
(pub/sub delivery, cursors, replays) and
:class:`realtime.net.redis.link.Link` (the connection task: connect,
reconnect, heartbeat, flush reports).  The state is one object, not
copies, because both parts react to the same connection: a loss seen by
the link must stop delivery at once.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import coredis
import coredis.exceptions
import trio

from realtime.config.redact import redact_url
from realtime.hub.broker import BrokerUnavailable, HubView

__all__ = [
    "BACKOFF_FIRST",
    "BACKOFF_MAX",
    "CATCH_UP_TIMEOUT",
    "IDLE_TTL",
    "READY_TIMEOUT",
    "REDIS_ERRORS",
    "REVOCATION_GRACE",
    "BrokerState",
    "Watch",
    "as_bytes",
    "as_text",
    "log",
    "redact_url",
]

log = logging.getLogger("realtime.broker")

IDLE_TTL = 24 * 3600.0  # an unwatched, unused channel's counter and stream are kept this long
REVOCATION_GRACE = 300.0  # revoked jtis are kept this long past their exp (RevokedSet.grace)
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
READY_TIMEOUT = 5.0  # a subscribe waits this long for its channel to be subscribed in Redis
CATCH_UP_TIMEOUT = 2.0  # a `since` ahead of this node waits this long for delivery to reach it
REDIS_ERRORS = (coredis.exceptions.RedisError, OSError, TimeoutError)


def as_bytes(text: str) -> bytes:
    """A channel name or ``sub`` as Redis bytes (lone surrogates survive)."""
    return text.encode("utf-8", "surrogatepass")


def as_text(raw: bytes) -> str:
    """The inverse of :func:`as_bytes`."""
    return raw.decode("utf-8", "surrogatepass")


class Watch:
    """One channel this node receives: its cursor and subscription state."""

    __slots__ = ("cursor", "wanted", "holds", "subscribed", "ready", "settled", "pending", "advanced")

    def __init__(self) -> None:
        self.cursor = 0
        self.wanted = False  # the hub has local subscribers
        self.holds = 0  # subscribes under way (Hub.subscribe_async)
        self.subscribed = False  # SUBSCRIBE confirmed on the current connection
        self.ready = False  # cursor valid: live messages are delivered
        self.settled = trio.Event()  # set when ready, or when the connection drops
        self.pending: list[tuple[int, bytes]] = []  # messages seen before ready
        self.advanced: trio.Event | None = None  # set when the cursor moves (someone waits)

    @property
    def needed(self) -> bool:
        return self.wanted or self.holds > 0

    def moved(self) -> None:
        """The cursor moved: wake whoever waits for it."""
        if self.advanced is not None:
            self.advanced.set()
            self.advanced = None


def _node_id() -> str:
    return secrets.token_hex(8)


@attrs.define(eq=False)
class BrokerState:
    """The state :class:`Delivery` and :class:`Link` share (the arguments
    are described on :class:`realtime.net.redis.broker.RedisBroker`).

    ``connected`` is set once connected and replaced on every loss;
    ``lost`` is set on a loss and replaced once connected again.
    """

    url: str
    node_ttl: float = 10.0
    idle_ttl: float = IDLE_TTL
    on_revoke: Callable[[str, float], Any] | None = None
    # SSE: an rt:stream-refresh message (raw) for a stream here, maybe.
    on_stream_refresh: Callable[[bytes], Any] | None = None
    node: str = attrs.field(factory=_node_id)
    hub: HubView | None = None
    client: Any = None  # coredis.Redis while the link is connected
    up: bool = False
    watches: dict[str, Watch] = attrs.field(factory=dict)
    ctl_wake: trio.Event = attrs.field(factory=trio.Event)
    flush_wake: trio.Event = attrs.field(factory=trio.Event)
    dirty: dict[str, set[str]] = attrs.field(factory=dict)
    revocations: deque[tuple[str, float]] = attrs.field(factory=lambda: deque(maxlen=100_000))
    scripts: dict[str, Any] = attrs.field(factory=dict)
    # Server API requests and answers (rt:ctl...), handed over by the pub/sub reader.
    on_ctl: Callable[[bytes, bytes], None] | None = None
    # Applies a revocation cut-off found in Redis at (re)connect (a node that
    # was away, or restarted on a store of its own, still learns of it).
    on_cutoff: Callable[[dict[str, Any]], Awaitable[Any]] | None = None
    # counters for /metrics and tests
    delivered: int = 0
    reconnects: int = 0
    connected: trio.Event = attrs.field(factory=trio.Event)
    lost: trio.Event = attrs.field(factory=trio.Event)

    @property
    def shown_url(self) -> str:
        """The URL as logs and messages show it (no password)."""
        return redact_url(self.url)

    def watch(self, channel: str) -> Watch:
        """``channel``'s :class:`Watch`, made when missing."""
        w = self.watches.get(channel)
        if w is None:
            w = self.watches[channel] = Watch()
        return w

    def script(self, name: str) -> Any:
        """A registered script, or :class:`BrokerUnavailable` while down."""
        if self.client is None or not self.up:
            raise BrokerUnavailable("the message broker is unreachable")
        return self.scripts[name]

    def reported(self, channel: str, result: Any) -> None:
        """Hand a REPORT script's answer (see :data:`realtime.net.redis.lua.REPORT`)
        to the hub: the cluster-wide occupied/vacated and join/leave changes
        this node's report caused (webhook events)."""
        hub = self.hub
        if hub is None or not isinstance(result, (list, tuple)) or not result:
            return
        events = [(as_text(bytes(e[:1])), as_text(bytes(e[1:]))) for e in result[1:]]
        hub.cluster_events(channel, int(result[0]), events)

    def live_client(self) -> Any:
        """The connected client, or :class:`BrokerUnavailable`."""
        client = self.client
        if client is None:
            raise BrokerUnavailable("the message broker is unreachable")
        return client
