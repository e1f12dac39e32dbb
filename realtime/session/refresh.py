"""Moving a live session's deadline with a new token (SPEC §4 ``refresh``,
SPEC §13 ``POST /api/streams/ID/refresh``), without I/O.

One rule for both transports: the new token must verify, be for the same
``sub`` and ``client_id`` as the session, and still stand for a live
principal.  On success the peer adopts the new identity, the hub's index
follows, and subscriptions the new scopes no longer allow are dropped.
How the answer reaches the client (a WebSocket ``refreshed`` frame, an SSE
``refreshed`` event plus an HTTP answer) is the transport's business.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Protocol

import attrs

from realtime.hub import Connection
from realtime.tokens.bearer import principal_problem
from realtime.tokens.keyring import AccessClaims, TokenError

if TYPE_CHECKING:
    from realtime.config.settings import Settings
    from realtime.hub import Hub
    from realtime.tokens.keyring import KeyRing, RevokedSet

__all__ = ["ANOTHER_PRINCIPAL", "RefreshApp", "Refreshable", "Refused", "Refreshed", "apply_refresh", "refresh",
           "verify_refresh"]

ANOTHER_PRINCIPAL = "token is for another subject or client"


class _RefreshCounters(Protocol):
    refreshes: Counter[str]


class RefreshApp(Protocol):
    """What a refresh reads (the dispatcher's ``App`` is one)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def keyring(self) -> KeyRing: ...
    @property
    def revoked(self) -> RevokedSet: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def metrics(self) -> _RefreshCounters: ...


class Refreshable(Connection, Protocol):
    """A live session whose token can be replaced."""

    def adopt(self, claims: AccessClaims) -> None:
        """Take a refreshed token's identity (``sub`` ... ``scopes``, ``exp``)."""
        ...


@attrs.frozen
class Refused:
    """Why a refresh token was not taken (``code`` is ``invalid_token``)."""

    message: str
    code: str = "invalid_token"


@attrs.frozen
class Refreshed:
    """A good refresh: the new claims and the channels the new scopes lost."""

    claims: AccessClaims
    lost: tuple[str, ...]


def verify_refresh(token: str, sub: str, client_id: str, app: RefreshApp) -> AccessClaims | Refused:
    """The claims of ``token`` if it may replace the token of a session of
    ``sub`` and ``client_id`` (also where the session lives on another node)."""
    settings = app.settings
    try:
        claims = app.keyring.verify(
            token,
            issuer=settings.issuer,
            audience=settings.audience,
            leeway=settings.oauth.leeway,
            revoked=app.revoked,
        )
    except TokenError as exc:
        app.metrics.refreshes["error"] += 1
        return Refused(str(exc))
    if claims.sub != sub or claims.client_id != client_id:
        return Refused(ANOTHER_PRINCIPAL)
    problem = principal_problem(claims, settings)
    if problem is not None:
        return Refused(problem)
    return claims


def apply_refresh(claims: AccessClaims, peer: Refreshable, app: RefreshApp) -> Refreshed:
    """Make verified ``claims`` ``peer``'s identity; drop what they no longer allow."""
    old = (peer.sub, peer.client_id, peer.kid, peer.jti)
    peer.adopt(claims)
    app.hub.connections.reindex(peer, *old)
    app.metrics.refreshes["ok"] += 1
    # The new token may hold fewer scopes: drop what it no longer allows.
    lost = tuple(channel for _conn, channel in app.hub.revalidate(peer))
    return Refreshed(claims, lost)


def refresh(token: str, peer: Refreshable, app: RefreshApp) -> Refreshed | Refused:
    """Replace ``peer``'s token with ``token`` if it may (see the module)."""
    claims = verify_refresh(token, peer.sub, peer.client_id, app)
    if isinstance(claims, Refused):
        return claims
    return apply_refresh(claims, peer, app)
