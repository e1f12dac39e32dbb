"""OAuth 1 signed requests at protected resources: ``/api/publish`` and the
WebSocket handshake, plus what reload and revocation do to them.

A verified request becomes an :class:`realtime.tokens.keyring.AccessClaims`, so the
hub, the session and the reload code treat it like a bearer token:

* ``jti`` is the access token's id (``oauth1-...``): ``state.revoke_access``
  finds its live sockets through the hub's jti index and closes them 4003;
* ``client_id`` is the app's: removing the app closes them (reload);
* ``kid`` is :data:`OAUTH1_KID`, which no signing key has, so key
  rotation leaves them alone;
* ``exp`` is the token's lifetime (``oauth1_token_ttl``) or, as OAuth 1
  tokens do not expire by themselves, :data:`NO_EXPIRY`: the socket lives
  until the token is revoked.
"""

from __future__ import annotations

from realtime.http.request import Request
from realtime.http.responses import Response
from realtime.hub import ConnectionIndex
from realtime.oauth1.credentials import Kind, OAuth1App, authenticate
from realtime.oauth1.errors import OAuth1Error
from realtime.config.settings import Settings
from realtime.protocol.close import CloseCode
from realtime.store import OAuth1AccessToken
from realtime.tokens.bearer import principal_problem
from realtime.tokens.keyring import AccessClaims

OAUTH1_KID = "oauth1"
#: 9999-12-31T23:59:59Z: "until revoked" for the session's deadline.
NO_EXPIRY = 253402300799


def claims_for(token: OAuth1AccessToken, settings: Settings) -> AccessClaims:
    return AccessClaims(
        iss=settings.issuer,
        sub=token.sub,
        aud=settings.audience,
        exp=int(token.expires_at) if token.expires_at is not None else NO_EXPIRY,
        iat=int(token.issued_at),
        jti=token.token_id,
        client_id=token.client_id,
        scope=token.scope,
        kid=OAUTH1_KID,
    )


async def oauth1_principal(request: Request, state: OAuth1App) -> AccessClaims | Response:
    """Verify an OAuth 1 signed request to a protected resource.

    Returns the claims, or a 400/401 response: JSON ``{"error",
    "error_description", "oauth_problem", ...}`` with ``WWW-Authenticate:
    OAuth`` (and ``Bearer``) on 401.
    """
    try:
        verified = await authenticate(request, state, Kind.RESOURCE)
    except OAuth1Error as exc:
        return exc.resource_response()
    assert verified.access_token is not None
    claims = claims_for(verified.access_token, state.settings)
    if principal_problem(claims, state.settings) is not None:
        return OAuth1Error("token_rejected", "the token's user is unknown or disabled").resource_response()
    return claims


def withdraw_oauth1(connections: ConnectionIndex, old: Settings, new: Settings) -> int:
    """After a reload: close (4003) the OAuth 1 sockets of apps that no
    longer speak OAuth 1 or whose consumer key changed (removed apps and
    users are handled with everyone else's)."""
    closed = 0
    for client_id, before in old.apps.items():
        after = new.apps.get(client_id)
        if after is None or not before.oauth1:
            continue
        if not after.oauth1 or after.consumer_key != before.consumer_key:
            for conn in connections.by_client(client_id):
                if conn.kid == OAUTH1_KID:
                    conn.withdraw(CloseCode.REVOKED, "access withdrawn")
                    closed += 1
    return closed
