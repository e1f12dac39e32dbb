"""Token revocation (RFC 7009).

RFC 7009 §2.2: "The authorization server responds with HTTP status code
200 if the token has been revoked successfully or if the client submitted
an invalid token.  Note: invalid tokens do not cause an error response
since the client cannot handle such an error in a reasonable way."

RFC 7009 §2.1: "The authorization server first validates the client
credentials (in case of a confidential client) and then verifies whether
the token was issued to the client making the revocation request.  If
this validation fails, the request is refused and the client is informed
of the error" — ``invalid_grant`` ("was issued to another client",
RFC 6749 §5.2).

"If the particular token is a refresh token and the authorization server
supports the revocation of access tokens, then the authorization server
SHOULD also invalidate all access tokens based on the same authorization
grant": revoking a refresh token revokes its whole family and the
family's live access tokens.  An access token (one of our JWTs, checked
by signature) has its ``jti`` stored until its ``exp``.
"""

from __future__ import annotations

import hmac
import logging

from realtime.http.request import Request
from realtime.http.responses import Response
from realtime.oauth.clients import authenticate_client
from realtime.oauth.common import read_form
from realtime.oauth.errors import NO_STORE, InvalidGrantError, InvalidRequestError, json_endpoint_failure
from realtime.oauth.services import OAuthApp
from realtime.store import token_hash
from realtime.tokens.keyring import TokenError

log = logging.getLogger("realtime.oauth")


def looks_like_jwt(token: str) -> bool:
    """Our refresh tokens are base64url without dots; our access tokens are JWS compact."""
    return token.count(".") == 2


async def revoke_endpoint(request: Request, state: OAuthApp) -> Response:
    """POST /oauth2/revoke."""
    services = state.oauth
    settings = state.settings
    now = services.clock()
    try:
        form = read_form(request)
        client = await authenticate_client(request, form, settings, services, now)
        token = form.get("token")
        if not token:
            raise InvalidRequestError("token is missing")
        # token_type_hint: "An invalid token type hint value is ignored by the
        # authorization server" (§2.1); the token's shape tells us its type.
        if looks_like_jwt(token):
            try:
                claims = state.keyring.verify(
                    token, issuer=settings.issuer, audience=settings.audience,
                    leeway=settings.oauth.leeway, now=now, revoked=None,
                )
            except TokenError:
                claims = None  # unknown, forged or already expired: nothing to revoke
            if claims is not None:
                if not hmac.compare_digest(claims.client_id.encode(), client.client_id.encode()):
                    raise InvalidGrantError("the token was issued to another client")
                await services.store.revoke_jtis([(claims.jti, float(claims.exp))])
                state.revoke_access(claims.jti, float(claims.exp))
        else:
            record = await services.store.get_refresh(token_hash(token))
            if record is not None:
                if not hmac.compare_digest(record.client_id.encode(), client.client_id.encode()):
                    raise InvalidGrantError("the token was issued to another client")
                for jti, exp in await services.store.revoke_family(record.family_id, now):
                    state.revoke_access(jti, exp)
    except Exception as exc:
        return json_endpoint_failure(log, "revocation endpoint", exc)
    return Response(200, NO_STORE)
