"""Token introspection (RFC 7662), for authenticated confidential clients.

RFC 7662 §2.1: "To prevent token scanning attacks, the endpoint MUST also
require some form of authorization to access this endpoint" — public
clients (``none``) are refused with ``invalid_client``.

RFC 7662 §2.2: "If the introspection call is properly authorized but the
token is not active, does not exist on this server, or the protected
resource is not allowed to introspect this particular token, then the
authorization server MUST return an introspection response with the
"active" field set to "false"."  No other member is sent then.

Access tokens may be introspected by any authenticated client (resource
servers do that); a refresh token only by the client it was issued to.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from realtime.http.request import Request
from realtime.http.responses import Response, json_response
from realtime.oauth.clients import authenticate_client
from realtime.oauth.common import active_user, read_form, scope_string
from realtime.oauth.families import credential_changed, family_deadline
from realtime.oauth.errors import NO_STORE, InvalidClientError, InvalidRequestError, json_endpoint_failure
from realtime.oauth.revocation import looks_like_jwt
from realtime.oauth.services import OAuthApp
from realtime.store import token_hash
from realtime.tokens.bearer import principal_problem
from realtime.tokens.keyring import TokenError

log = logging.getLogger("realtime.oauth")

INACTIVE: dict[str, Any] = {"active": False}


async def _introspect(token: str, client_id: str, state: OAuthApp, now: float) -> dict[str, Any]:
    settings = state.settings
    services = state.oauth
    if looks_like_jwt(token):
        try:
            claims = state.keyring.verify(
                token, issuer=settings.issuer, audience=settings.audience,
                leeway=settings.oauth.leeway, now=now, revoked=state.revoked,
            )
        except TokenError:
            return INACTIVE
        if principal_problem(claims, settings) is not None:
            return INACTIVE
        out: dict[str, Any] = {
            "active": True,
            "scope": scope_string(claims.scope),
            "client_id": claims.client_id,
            "sub": claims.sub,
            "exp": int(claims.exp),
            "iat": int(claims.iat),
            "iss": claims.iss,
            "aud": claims.aud,
            "token_type": "Bearer",
            "jti": claims.jti,
        }
        if claims.sub in settings.users:
            out["username"] = claims.sub
        return out
    record = await services.store.get_refresh(token_hash(token))
    user = None if record is None else active_user(settings, record.sub)
    if (
        record is None
        or record.used_at is not None
        or record.family_revoked
        or record.expires_at <= now
        or not hmac.compare_digest(record.client_id.encode(), client_id.encode())
        or record.client_id not in settings.apps
        or user is None
        # what the refresh grant would refuse: a family past its lifetime, a changed password
        or family_deadline(settings, record.family_created_at) <= now
        or credential_changed(services.key, user, record)
    ):
        return INACTIVE
    return {
        "active": True,
        "scope": scope_string(record.scope),
        "client_id": record.client_id,
        "sub": record.sub,
        "username": record.sub,
        "exp": int(record.expires_at),
        "iat": int(record.issued_at),
        "iss": settings.issuer,
        "token_type": "refresh_token",
    }


async def introspect_endpoint(request: Request, state: OAuthApp) -> Response:
    """POST /oauth2/introspect."""
    services = state.oauth
    now = services.clock()
    try:
        form = read_form(request)
        client = await authenticate_client(request, form, state.settings, services, now)
        if client.public:
            raise InvalidClientError("introspection needs client authentication")
        token = form.get("token")
        if not token:
            raise InvalidRequestError("token is missing")
        body = await _introspect(token, client.client_id, state, now)
    except Exception as exc:
        return json_endpoint_failure(log, "introspection endpoint", exc)
    return json_response(200, body, NO_STORE)
