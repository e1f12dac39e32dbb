"""Bearer tokens for a protected resource (RFC 6750): find one in the
``Authorization`` header, verify it, and check that it still stands for a
live principal.

Shared by the WebSocket gate (:mod:`realtime.protocol.upgrade`), the HTTP
API and the OAuth resource endpoints (userinfo, introspection, OAuth 1
signed requests), so it sits in ``tokens`` below all of them; the answer
to a bad token is an RFC 6750 §3 challenge built by :mod:`realtime.http`.
"""

from __future__ import annotations

from realtime.config.settings import Settings
from realtime.http.request import Request
from realtime.http.responses import Response, bearer_challenge
from realtime.tokens.keyring import AccessClaims, KeyRing, RevokedSet, TokenError


def header_token(request: Request) -> str | None:
    """RFC 6750 §2.1: the token of ``Authorization: Bearer <token>``, or None."""
    scheme, _, token = (request.header("authorization") or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def principal_problem(claims: AccessClaims, settings: Settings) -> str | None:
    """Why a well-signed token no longer stands for a live principal, or None.

    Used at the handshake and after every reload (SPEC §6: removed or
    disabled apps and users lose access).
    """
    if claims.client_id not in settings.apps:
        return "client not registered"
    if claims.sub == claims.client_id:
        return None  # client_credentials: the app itself
    user = settings.users.get(claims.sub)
    if user is None:
        return "user not registered"
    if user.disabled:
        return "user disabled"
    return None


def verify_bearer(
    token: str | None,
    settings: Settings,
    keyring: KeyRing,
    revoked: RevokedSet,
    now: float | None = None,
) -> AccessClaims | Response:
    """Verify a bearer token for a protected resource (RFC 6750 §3.1)."""
    if token is None:
        return bearer_challenge(401, "invalid_token", "no bearer token")
    try:
        claims = keyring.verify(
            token,
            issuer=settings.issuer,
            audience=settings.audience,
            leeway=settings.oauth.leeway,
            now=now,
            revoked=revoked,
        )
    except TokenError as exc:
        return bearer_challenge(401, "invalid_token", str(exc))
    problem = principal_problem(claims, settings)
    if problem is not None:
        return bearer_challenge(401, "invalid_token", problem)
    return claims
