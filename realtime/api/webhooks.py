"""Webhooks (SPEC §12), sans-I/O: the event, its body and signature, the
bounded outbox with its per-channel lanes, and the retry rules.  The
trio shell that POSTs them is :mod:`realtime.net.webhooks`.

- An event is ``{"id","type","time","node","data"}``; its body is
  compact UTF-8 JSON, signed as Stripe and Pusher do:
  ``Realtime-Signature: t=UNIX_TIME,v1=HEX``, HEX the HMAC-SHA256 of
  ``"{t}.{raw body}"`` with the hook's secret.  :func:`verify` is the
  receiver's side (constant-time; used by the tests).
- Order: each hook has :data:`LANES` lanes; an event goes to the lane of
  its channel (else of its ``sub``), and a lane delivers one event at a
  time, retries included, so the events of one channel arrive in order
  while a failing channel holds up only its own lane.
- Bounded: at most ``queue_size`` events wait per hook; a new one past
  that is dropped and counted (``dropped``), never waited for.
- At least once: a 2xx ends an event; a timeout, a refused connection
  or a 5xx (also 408 and 429) is retried after :func:`backoff` up to
  ``max_attempts``; any other 4xx is given up at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import zlib
from collections import deque
from typing import Any, Literal

import attrs

from realtime.config.settings import WebhookSettings

__all__ = ["LANES", "Event", "Outbox", "WebhookStats", "backoff", "body_of", "build", "outcome", "sign", "verify"]

LANES = 8
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
RETRIED_4XX = frozenset({408, 425, 429})


@attrs.frozen
class Event:
    id: str
    type: str
    time: float
    node: str
    data: dict[str, Any]

    @property
    def lane_key(self) -> str:
        """Events of one channel share a lane (their order); others go by ``sub``."""
        return str(self.data.get("channel") or self.data.get("sub") or "")


def build(type_: str, data: dict[str, Any], node: str, now: float) -> Event:
    return Event(id="evt_" + secrets.token_hex(12), type=type_, time=round(now, 3), node=node, data=data)


def body_of(event: Event) -> bytes:
    return json.dumps({"id": event.id, "type": event.type, "time": event.time, "node": event.node,
                       "data": event.data}, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``Realtime-Signature`` header value."""
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, header: str, body: bytes, now: float, tolerance: float = 300.0) -> bool:
    """A receiver's check: a ``v1`` matches (constant time) and ``t`` is recent."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, v) for v in parts.get("v1", []))


def outcome(status: int | None) -> Literal["done", "retry", "give_up"]:
    """What an attempt's answer means; ``None``: timeout or no connection."""
    if status is None or status >= 500 or status in RETRIED_4XX:
        return "retry"
    if 200 <= status < 300:
        return "done"
    return "give_up"


def backoff(attempt: int, jitter: float = 0.0) -> float:
    """Seconds before attempt ``attempt + 1`` (``attempt`` >= 1 failed):
    0.5 s doubling to 30 s, stretched by ``jitter`` (0..1, the caller's random)."""
    return min(BACKOFF_FIRST * 2 ** (attempt - 1), BACKOFF_MAX) * (1 + jitter / 2)


@attrs.define
class WebhookStats:
    """Counters for /metrics (all hooks together)."""

    enqueued: int = 0
    delivered: int = 0  # a 2xx
    failed: int = 0  # given up: a 4xx, or max_attempts reached
    retries: int = 0  # attempts after the first
    dropped: int = 0  # the queue was full
    latency_sum: float = 0.0  # seconds from the event to its 2xx
    latency_count: int = 0


class Outbox:
    """One hook's waiting events, in lanes (see the module docstring)."""

    def __init__(self, hook: WebhookSettings, stats: WebhookStats) -> None:
        self.hook = hook
        self.stats = stats
        self.lanes: list[deque[Event]] = [deque() for _ in range(LANES)]
        self.size = 0
        self.wanted = frozenset(hook.events)

    def put(self, event: Event) -> int | None:
        """Queue ``event``; its lane's number, or ``None`` when dropped
        (not wanted by this hook, or the queue is full: counted)."""
        if event.type not in self.wanted:
            return None
        if self.size >= self.hook.queue_size:
            self.stats.dropped += 1
            return None
        lane = zlib.crc32(event.lane_key.encode("utf-8", "surrogatepass")) % LANES
        self.lanes[lane].append(event)
        self.size += 1
        self.stats.enqueued += 1
        return lane

    def head(self, lane: int) -> Event | None:
        queue = self.lanes[lane]
        return queue[0] if queue else None

    def done(self, lane: int) -> None:
        """The lane's head is finished (delivered or given up)."""
        self.lanes[lane].popleft()
        self.size -= 1
