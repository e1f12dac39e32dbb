"""What the token endpoint's grants share: their context and their answer.

Every grant is called with a :class:`GrantContext` and ends the same way:
:func:`issue_tokens` signs the access token and draws the refresh token
(nothing stored yet; the grant stores what it answers),
:func:`still_allowed` re-applies the current app's and user's scopes, and
:func:`add_id_token` adds the OIDC id_token.  The few checks more than one
grant makes the same way (a required parameter, a constant-time match,
revoking the access tokens a store revocation hands back) sit here too, so
that no grant module imports another.
"""

from __future__ import annotations

import hmac
import math
import secrets

import attrs

from realtime.http.request import Request
from realtime.oauth.clients import AuthenticatedClient
from realtime.oauth.common import OFFLINE_ACCESS, access_ttl, scope_string
from realtime.oauth.errors import InvalidRequestError
from realtime.oauth.families import credential_fingerprint, refresh_expiry
from realtime.oauth.services import OAuthApp, OAuthServices
from realtime.config.settings import App, Settings
from realtime.store import IssuedTokens, token_hash
from realtime.oauth.idtoken import OPENID, issue_id_token
from realtime.tokens.keyring import issue_access_token


@attrs.frozen
class GrantContext:
    request: Request
    form: dict[str, str]
    client: AuthenticatedClient
    state: OAuthApp
    settings: Settings
    services: OAuthServices
    now: float

    @property
    def app(self) -> App:
        return self.client.app


def same(a: str, b: str) -> bool:
    """Constant-time equality of two strings (any ``str`` encodes, lone surrogates too)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def required(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise InvalidRequestError(f"{name} is missing")
    return value


def revoke_live(state: OAuthApp, pairs: list[tuple[str, float]]) -> None:
    for jti, exp in pairs:
        state.revoke_access(jti, exp)


async def issue_tokens(
    ctx: GrantContext,
    sub: str,
    scopes: frozenset[str],
    *,
    refresh: bool,
    family_id: str | None = None,
    refresh_scope: frozenset[str] | None = None,
    family_started: float | None = None,
) -> tuple[dict, IssuedTokens]:
    """Sign an access token (and draw a refresh token); nothing stored yet.

    A refresh token expires by its family's absolute end (``family_started``,
    now for a new family) and carries the user's credential fingerprint.
    """
    ttl = access_ttl(ctx.settings, ctx.app)
    token, claims = issue_access_token(
        ctx.state.keyring,
        issuer=ctx.settings.issuer,
        audience=ctx.settings.audience,
        sub=sub,
        client_id=ctx.app.client_id,
        scope=scopes,
        ttl=ttl,
        now=ctx.now,
    )
    body: dict = {
        "access_token": token,
        "token_type": "Bearer",
        # exp is floor(now + ttl): counted from the whole second, this is ttl.
        "expires_in": max(0, int(claims.exp) - math.floor(ctx.now)),
        "scope": scope_string(scopes),
    }
    issued = IssuedTokens(access_jti=claims.jti, access_exp=float(claims.exp), client_id=ctx.app.client_id, sub=sub)
    if refresh:
        refresh_token = secrets.token_urlsafe(32)
        body["refresh_token"] = refresh_token
        issued = attrs.evolve(
            issued,
            refresh_hash=token_hash(refresh_token),
            refresh_expires_at=refresh_expiry(
                ctx.settings, ctx.app, ctx.now, ctx.now if family_started is None else family_started),
            family_id=family_id,
            scope=refresh_scope if refresh_scope is not None else scopes,
            credential=credential_fingerprint(ctx.services.key, ctx.settings.users.get(sub)),
        )
    return body, issued


def still_allowed(scopes: frozenset[str], app: App, user_scopes: tuple[str, ...]) -> frozenset[str]:
    """Re-apply the current app's and user's scopes (the files may have changed).
    ``openid`` needs only the app's (as in :func:`realtime.oauth.common.grant_scopes`)."""
    keep = (frozenset(app.scopes) & (frozenset(user_scopes) | {OPENID})) | {OFFLINE_ACCESS}
    return scopes & keep


def add_id_token(ctx: GrantContext, body: dict, sub: str, scopes: frozenset[str], *,
                 sid: str | None, auth_time: float | None, nonce: str | None) -> None:
    """OIDC Core §3.1.3.3: a grant whose scope holds ``openid`` answers an ``id_token`` too."""
    if OPENID not in scopes:
        return
    body["id_token"] = issue_id_token(
        ctx.state.keyring, issuer=ctx.settings.issuer, client_id=ctx.app.client_id, sub=sub,
        access_token=body["access_token"], auth_time=auth_time, sid=sid, nonce=nonce,
        ttl=access_ttl(ctx.settings, ctx.app), now=ctx.now,
    )
