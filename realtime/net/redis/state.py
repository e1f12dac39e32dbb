"""What every part of :class:`realtime.net.redis.broker.RedisBroker` shares:
its constants, the per-channel :class:`_Watch`, and the constructor with
the state it sets up.

The broker is one object built from layers, each in its own module:
this state, pub/sub delivery (:mod:`realtime.net.redis.delivery`),
the connection task (:mod:`realtime.net.redis.link`), and the
Broker protocol the hub calls (:mod:`realtime.net.redis.broker`).
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import coredis
import coredis.exceptions
import trio

if TYPE_CHECKING:
    from realtime.hub import Hub

log = logging.getLogger("realtime.broker")

IDLE_TTL = 24 * 3600.0  # an unwatched, unused channel's counter and stream are kept this long
REVOCATION_GRACE = 300.0  # revoked jtis are kept this long past their exp (RevokedSet.grace)
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
READY_TIMEOUT = 5.0  # a subscribe waits this long for its channel to be subscribed in Redis
CATCH_UP_TIMEOUT = 2.0  # a `since` ahead of this node waits this long for delivery to reach it
_REDIS_ERRORS = (coredis.exceptions.RedisError, OSError, TimeoutError)


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _s(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


class _Watch:
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


class _RedisState:
    """The constructor and the state the broker's layers share (the
    arguments are described on :class:`realtime.net.redis.broker.RedisBroker`)."""

    def __init__(
        self,
        url: str,
        *,
        node_ttl: float = 10.0,
        on_revoke: Callable[[str, float], Any] | None = None,
        idle_ttl: float = IDLE_TTL,
    ) -> None:
        self.url = url
        self.node = secrets.token_hex(8)
        self.node_ttl = node_ttl
        self.idle_ttl = idle_ttl
        self.on_revoke = on_revoke
        self._hub: Hub | None = None
        self._client: Any = None  # coredis.Redis while run() is connected
        self._up = False
        self._watches: dict[str, _Watch] = {}
        self._ctl_wake = trio.Event()
        self._flush_wake = trio.Event()
        self._dirty: dict[str, set[str]] = {}
        self._revocations: deque[tuple[str, float]] = deque(maxlen=100_000)
        self._scripts: dict[str, Any] = {}
        # counters for /metrics and tests
        self.delivered = 0
        self.reconnects = 0
        self.connected = trio.Event()  # set once connected; replaced on every loss
        self.lost = trio.Event()  # set on a loss; replaced once connected again
