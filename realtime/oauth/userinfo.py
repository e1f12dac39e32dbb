"""The user's profile for a bearer access token (GET/POST /oauth2/userinfo).

RFC 6750 §3.1: "invalid_token: The access token provided is expired,
revoked, malformed, or invalid for other reasons. The resource SHOULD
respond with the HTTP 401 (Unauthorized) status code."
"insufficient_scope: The request requires higher privileges than provided
by the access token. The resource server SHOULD respond with the HTTP 403
(Forbidden) status code" — answered for a token that stands for no user
(``client_credentials``).

Which claims a token may read depends on its scope: :func:`claims_for_scope`.

RFC 6750 §2: the token comes in the ``Authorization: Bearer`` header or,
on POST, as the ``access_token`` form field (§2.2); "Clients MUST NOT use
more than one method to transmit the token in each request."  The query
form (§2.3) is not accepted: URLs end up in logs.
"""

from __future__ import annotations

from typing import Any

from realtime.http.request import Request
from realtime.http.responses import Response, bearer_challenge, json_response
from realtime.oauth.common import scope_string, single
from realtime.oauth.services import OAuthApp
from realtime.oauth.errors import NO_STORE, InvalidRequestError
from realtime.tokens.bearer import verify_bearer
from realtime.config.settings import User


def _token(request: Request) -> str | None:
    """The bearer token, or None when absent; InvalidRequestError when ambiguous."""
    found: list[str] = []
    for value in request.header_values("authorization"):
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            found.append(rest.strip())
        else:
            raise InvalidRequestError("expected Authorization: Bearer")
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        try:
            form = single(request.form())
        except ValueError:
            raise InvalidRequestError("malformed form") from None
        if "access_token" in form:
            found.append(form["access_token"])
    if len(found) > 1:
        raise InvalidRequestError("send the token one way only")
    return found[0] if found else None


async def userinfo_endpoint(request: Request, state: OAuthApp) -> Response:
    settings = state.settings
    try:
        token = _token(request)
    except InvalidRequestError as exc:
        return bearer_challenge(400, "invalid_request", exc.description)
    if token is None:
        # RFC 6750 §3.1: "If the request lacks any authentication information
        # ..., the resource server SHOULD NOT include an error code".
        return bearer_challenge(401, None, "a bearer token is required")
    claims = verify_bearer(token, settings, state.keyring, state.revoked)
    if isinstance(claims, Response):
        return claims
    user = settings.users.get(claims.sub)
    if user is None:
        return bearer_challenge(403, "insufficient_scope", "the token does not stand for a user")
    body = claims_for_scope(user, claims.scope)
    body["scope"] = scope_string(claims.scope)
    return json_response(200, body, NO_STORE)


def claims_for_scope(user: User, scope: frozenset[str]) -> dict[str, Any]:
    """The profile a token of ``scope`` may read (SPEC §8, OpenID Connect
    Core §5.4): ``sub`` always; ``profile`` adds ``name`` and
    ``preferred_username`` (and, for clients written against the older
    answer, ``display_name`` when the user has one); ``email`` adds
    ``email`` and ``email_verified``.  A ``chat:read``-only token learns
    nothing but who it stands for.

    ``email_verified`` is false: the address comes from the users file or
    an external provider's profile, and this server never proved that the
    user receives mail there (Core §5.1: true only when "the End-User's
    e-mail address was verified").
    """
    body: dict[str, Any] = {"sub": user.name}
    if "profile" in scope:
        body["name"] = user.display_name or user.name
        body["preferred_username"] = user.name
        if user.display_name:
            body["display_name"] = user.display_name
    if "email" in scope and user.email:
        body["email"] = user.email
        body["email_verified"] = False
    return body
