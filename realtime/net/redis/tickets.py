"""Single-use tickets shared by every node (SPEC §13), in Redis.

``POST /api/ticket`` on any node files the ticket's claims under
``rt:ticket:<sha256(ticket)>`` with ``SET ... NX PX ttl``; the gate on
any node redeems it with ``GETDEL``, which Redis runs atomically, so of
two nodes that race for one ticket exactly one gets the claims.  The
ticket itself is never stored, only its hash; the value is the token's
verified claims (no token either).  The in-process twin is
:class:`realtime.session.streams.TicketBook`.
"""

from __future__ import annotations

from coredis.tokens import PureToken

from realtime.hub.broker import BrokerUnavailable
from realtime.net.redis.state import REDIS_ERRORS, BrokerState
from realtime.session.streams import claims_from_json, claims_to_json, new_ticket, ticket_key
from realtime.tokens.keyring import AccessClaims

__all__ = ["KEY_PREFIX", "RedisTickets"]

KEY_PREFIX = "rt:ticket:"


class RedisTickets:
    """A :class:`realtime.session.streams.TicketStore` on the broker's Redis."""

    def __init__(self, state: BrokerState) -> None:
        self.state = state

    async def issue(self, claims: AccessClaims, ttl: float) -> str:
        client = self.state.live_client()
        ticket = new_ticket()
        try:
            stored = await client.set(KEY_PREFIX + ticket_key(ticket), claims_to_json(claims),
                                      condition=PureToken.NX, px=max(1, int(ttl * 1000)))
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        if not stored:  # 256 random bits met an unspent ticket: never in practice
            raise BrokerUnavailable("ticket collision")
        return ticket

    async def redeem(self, ticket: str) -> AccessClaims | None:
        client = self.state.live_client()
        try:
            raw = await client.getdel(KEY_PREFIX + ticket_key(ticket))
        except REDIS_ERRORS as exc:
            raise BrokerUnavailable(str(exc)) from None
        return None if raw is None else claims_from_json(raw)
