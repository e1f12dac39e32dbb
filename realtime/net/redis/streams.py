"""SSE state shared by every node in Redis (SPEC §13): single-use tickets
and the stream directory that lets a refresh reach another node.

Tickets: ``POST /api/ticket`` on any node files the ticket's claims under
``rt:ticket:<sha256(ticket)>`` with ``SET ... NX PX ttl``; the gate on
any node redeems it with ``GETDEL``, which Redis runs atomically, so of
two nodes that race for one ticket exactly one gets the claims.  The
ticket itself is never stored, only its hash; the value is the token's
verified claims (no token either).  The in-process twin is
:class:`realtime.session.streams.TicketBook`.

Streams: each live SSE stream is filed as ``rt:stream:<id>`` = node, sub
and client_id (expiring a minute after the stream's deadline).  A
``POST /api/streams/ID/refresh`` that lands on another node verifies the
token there, checks it against that entry, and publishes the verified
claims on ``rt:stream-refresh``; the stream's node applies them
(:func:`realtime.session.refresh.apply_refresh`) and the stream gets its
``refreshed`` event.
"""

from __future__ import annotations

import time

from coredis.tokens import PureToken

from realtime.hub.broker import BrokerUnavailable
from realtime.net.redis.state import REDIS_ERRORS, BrokerState, as_text
from realtime.session.streams import StreamEntry, claims_from_json, claims_to_json, new_ticket, ticket_key
from realtime.tokens.keyring import AccessClaims

__all__ = ["REFRESH_CHANNEL", "STREAM_PREFIX", "TICKET_PREFIX", "RedisStreams", "RedisTickets", "parse_refresh"]

TICKET_PREFIX = "rt:ticket:"
STREAM_PREFIX = "rt:stream:"
REFRESH_CHANNEL = b"rt:stream-refresh"
STREAM_GRACE = 60.0  # seconds a directory entry outlives its stream's deadline


class RedisTickets:
    """A :class:`realtime.session.streams.TicketStore` on the broker's Redis."""

    def __init__(self, state: BrokerState) -> None:
        self.state = state

    async def issue(self, claims: AccessClaims, ttl: float) -> str:
        client = self.state.live_client()
        ticket = new_ticket()
        try:
            stored = await client.set(TICKET_PREFIX + ticket_key(ticket), claims_to_json(claims),
                                      condition=PureToken.NX, px=max(1, int(ttl * 1000)))
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        if not stored:  # 256 random bits met an unspent ticket: never in practice
            raise BrokerUnavailable("ticket collision")
        return ticket

    async def redeem(self, ticket: str) -> AccessClaims | None:
        client = self.state.live_client()
        try:
            raw = await client.getdel(TICKET_PREFIX + ticket_key(ticket))
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        return None if raw is None else claims_from_json(raw)


class RedisStreams:
    """A :class:`realtime.session.streams.StreamDirectory` on the broker's Redis."""

    def __init__(self, state: BrokerState) -> None:
        self.state = state

    async def register(self, stream_id: str, sub: str, client_id: str, exp: float) -> None:
        client = self.state.live_client()
        ttl_ms = max(1000, int((exp - time.time() + STREAM_GRACE) * 1000))
        try:
            await client.set(STREAM_PREFIX + stream_id, "\n".join((self.state.node, sub, client_id)), px=ttl_ms)
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None

    async def forget(self, stream_id: str) -> None:
        client = self.state.live_client()
        try:
            await client.delete([STREAM_PREFIX + stream_id])
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None

    async def lookup(self, stream_id: str) -> StreamEntry | None:
        client = self.state.live_client()
        try:
            raw = await client.get(STREAM_PREFIX + stream_id)
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        if raw is None:
            return None
        parts = as_text(raw).split("\n")
        return StreamEntry(*parts) if len(parts) == 3 else None

    async def forward(self, stream_id: str, claims: AccessClaims) -> int:
        client = self.state.live_client()
        try:
            return int(await client.publish(REFRESH_CHANNEL, f"{stream_id} {claims_to_json(claims)}"))
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None


def parse_refresh(data: bytes) -> tuple[str, AccessClaims] | None:
    """A ``rt:stream-refresh`` message: (stream id, claims), or ``None``."""
    stream_id, _, claims_json = as_text(data).partition(" ")
    claims = claims_from_json(claims_json)
    return None if claims is None or not stream_id else (stream_id, claims)
