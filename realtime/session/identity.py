"""The identity a connection holds from its access token, shared by the
WebSocket session and the SSE stream."""

from __future__ import annotations

from realtime.tokens.keyring import AccessClaims


class TokenIdentity:
    """The claims of the token a connection was opened (or last refreshed)
    with, and the fields the hub's indexes read from them."""

    # Thousands of connections live at once: slots, as in the subclasses.
    __slots__ = ("claims", "sub", "client_id", "kid", "jti", "scopes", "exp")

    def adopt(self, claims: AccessClaims) -> None:
        """Take ``claims`` as this connection's identity (at the start, and
        after a good refresh)."""
        self.claims = claims
        self.sub = claims.sub
        self.client_id = claims.client_id
        self.kid = claims.kid
        self.jti = claims.jti
        self.scopes = claims.scope
        self.exp = claims.exp
