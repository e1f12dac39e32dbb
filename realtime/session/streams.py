"""Live SSE streams by id, and single-use tickets (SPEC §13), without I/O.

:class:`Streams` lets ``POST /api/streams/ID/refresh`` find the stream it
names on this node.  Stream ids are random (unguessable, 128 bits): the
refresh token proves who may move the deadline, the id only says which
stream.

Tickets: ``POST /api/ticket`` turns a bearer token into a short, single-use
string a browser may put in a URL (``EventSource`` cannot send headers).
A ticket carries the token's verified claims, never the token, and lives
at most 30 seconds and never past the token's ``exp``.  It is redeemed
once: on one node by :class:`TicketBook`; across nodes by the Redis
ticket store in :mod:`realtime.net.redis.tickets` (``SET NX`` to issue,
``GETDEL`` to redeem, so two nodes can never both accept it).  Both
implement :class:`TicketStore`.  The gate re-checks the claims it gets
back (revoked ``jti``, retired key, removed app or user, ``exp``), so a
ticket never outlives what its token could do.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import attrs

from realtime.session.refresh import Refreshable
from realtime.tokens.keyring import AccessClaims

__all__ = [
    "MAX_TICKETS",
    "TICKET_TTL",
    "Stream",
    "StreamDirectory",
    "StreamEntry",
    "Streams",
    "TicketBook",
    "TicketStore",
    "claims_from_json",
    "claims_to_json",
    "new_ticket",
    "ticket_key",
]

TICKET_TTL = 30  # seconds, SPEC §13
#: Unredeemed tickets one node keeps; past it the oldest are forgotten.
MAX_TICKETS = 100_000


class Stream(Refreshable, Protocol):
    """A live SSE stream, as the refresh endpoint sees it."""

    stream_id: str

    def refreshed(self, claims: AccessClaims, lost: tuple[str, ...]) -> None:
        """The stream's token was replaced: move its deadline, tell the client."""
        ...


@attrs.frozen
class StreamEntry:
    """Where a stream lives and whose it is (the shared directory's entry)."""

    node: str
    sub: str
    client_id: str


class StreamDirectory(Protocol):
    """Streams of every node, so a refresh reaching another node than the
    stream's is forwarded (only with a broker:
    :class:`realtime.net.redis.streams.RedisStreams`)."""

    async def register(self, stream_id: str, sub: str, client_id: str, exp: float) -> None:
        """File a live stream of this node until a little past ``exp``."""
        ...

    async def forget(self, stream_id: str) -> None:
        ...

    async def lookup(self, stream_id: str) -> StreamEntry | None:
        ...

    async def forward(self, stream_id: str, claims: AccessClaims) -> int:
        """Hand verified refresh claims to the stream's node; how many nodes heard it."""
        ...


class Streams:
    """This node's live SSE streams, by id."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[str, Stream] = {}

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(16)

    def add(self, stream: Stream) -> None:
        self._by_id[stream.stream_id] = stream

    def remove(self, stream: Stream) -> None:
        if self._by_id.get(stream.stream_id) is stream:
            del self._by_id[stream.stream_id]

    def get(self, stream_id: str) -> Stream | None:
        return self._by_id.get(stream_id)

    def __len__(self) -> int:
        return len(self._by_id)


def new_ticket() -> str:
    return secrets.token_urlsafe(32)


def ticket_key(ticket: str) -> str:
    """What a store files a ticket under: its hash, so neither memory dumps
    nor Redis hold a redeemable value."""
    return hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).hexdigest()


def claims_to_json(claims: AccessClaims) -> str:
    return json.dumps({
        "iss": claims.iss, "sub": claims.sub, "aud": claims.aud, "exp": claims.exp, "iat": claims.iat,
        "jti": claims.jti, "client_id": claims.client_id, "scope": sorted(claims.scope), "kid": claims.kid,
    }, separators=(",", ":"))


def claims_from_json(text: str | bytes) -> AccessClaims | None:
    """The claims a store kept; ``None`` if they are not ours (never raises)."""
    try:
        raw: Any = json.loads(text)
        return AccessClaims(
            iss=str(raw["iss"]), sub=str(raw["sub"]), aud=str(raw["aud"]), exp=int(raw["exp"]),
            iat=int(raw["iat"]), jti=str(raw["jti"]), client_id=str(raw["client_id"]),
            scope=frozenset(str(s) for s in raw["scope"]), kid=str(raw["kid"]),
        )
    except (ValueError, TypeError, KeyError):
        return None


class TicketStore(Protocol):
    """Where tickets wait to be redeemed (in process or in Redis)."""

    async def issue(self, claims: AccessClaims, ttl: float) -> str:
        """A new ticket for ``claims``, redeemable once within ``ttl`` seconds.

        Raises:
            ConnectionError: the shared store is unreachable.
        """
        ...

    async def redeem(self, ticket: str) -> AccessClaims | None:
        """The claims of an unexpired, unredeemed ticket, now spent; else ``None``.

        Raises:
            ConnectionError: the shared store is unreachable.
        """
        ...


class TicketBook:
    """The in-process :class:`TicketStore` (no broker configured).

    Args:
        clock: monotonic seconds (injected for tests).
        limit: tickets kept at most; the oldest go first.
    """

    __slots__ = ("_clock", "_limit", "_tickets")

    def __init__(self, clock: Callable[[], float], limit: int = MAX_TICKETS) -> None:
        self._clock = clock
        self._limit = limit
        self._tickets: OrderedDict[str, tuple[float, AccessClaims]] = OrderedDict()

    async def issue(self, claims: AccessClaims, ttl: float) -> str:
        now = self._clock()
        self._expire(now)
        while len(self._tickets) >= self._limit:
            self._tickets.popitem(last=False)
        ticket = new_ticket()
        self._tickets[ticket_key(ticket)] = (now + ttl, claims)
        return ticket

    async def redeem(self, ticket: str) -> AccessClaims | None:
        entry = self._tickets.pop(ticket_key(ticket), None)  # spent whatever happens next
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def _expire(self, now: float) -> None:
        # Roughly in expiry order (issue order, ttl at most TICKET_TTL): drop
        # from the front while expired; redeem checks each one anyway.
        tickets = self._tickets
        while tickets:
            key, (expires, _claims) = next(iter(tickets.items()))
            if expires > now:
                return
            del tickets[key]

    def __len__(self) -> int:
        return len(self._tickets)
