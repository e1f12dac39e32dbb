"""The token endpoint (RFC 6749 §3.2) and its four grants.

Each grant is ``async def grant(ctx) -> dict`` returning the RFC 6749
§5.1 body; errors are :class:`OAuthError` raised anywhere and rendered
once by :func:`token_endpoint`.  Whatever a grant answers is committed to
the store before the answer is built (``synchronous=FULL``), so a
``kill -9`` right after the response loses nothing a client holds.

RFC 6749 §5.1: "The authorization server MUST include the HTTP
"Cache-Control" response header field [RFC2616] with a value of
"no-store" in any response containing tokens, credentials, or other
sensitive information, as well as the "Pragma" response header field
[RFC2616] with a value of "no-cache"."
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

import attrs

from realtime.http.request import Request
from realtime.http.responses import Response, json_response
from realtime.oauth import pkce
from realtime.oauth.clients import authenticate_client
from realtime.oauth.device import DEVICE_GRANT, approved_device_code
from realtime.oauth.common import OFFLINE_ACCESS, active_user, grant_scopes, parse_scope, read_form, wants_refresh
from realtime.oauth.errors import (
    NO_STORE,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    TemporarilyUnavailableError,
    TooManyAttemptsError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    json_endpoint_failure,
)
from realtime.oauth.families import credential_changed, family_deadline, may_retry
from realtime.oauth.issuing import GrantContext, add_id_token, issue_tokens, required, revoke_live, same, still_allowed
from realtime.oauth.login import MAX_USERNAME, Busy, Throttled, log_failed_login, verify_login
from realtime.oauth.providers.users import learn as learn_provider_user
from realtime.oauth.services import OAuthApp
from realtime.config.users import MAX_PASSWORD_LENGTH
from realtime.store import RefreshRecord, token_hash

log = logging.getLogger("realtime.oauth")


Grant = Callable[[GrantContext], Awaitable[dict]]


# -- authorization_code ------------------------------------------------------


async def authorization_code(ctx: GrantContext) -> dict:
    """RFC 6749 §4.1.3 with RFC 7636 §4.5–4.6.

    "The authorization server MUST: ensure that the authorization code was
    issued to the authenticated confidential client, or if the client is
    public, ensure that the code was issued to "client_id" in the request,
    verify that the authorization code is valid, and ensure that the
    "redirect_uri" parameter is present if the "redirect_uri" parameter was
    included in the initial authorization request ... and if included
    ensure that their values are identical."
    """
    code = required(ctx.form, "code")
    redirect_uri = ctx.form.get("redirect_uri")
    verifier = ctx.form.get("code_verifier")
    if verifier is not None and not pkce.valid_verifier(verifier):
        raise InvalidRequestError("code_verifier must be 43 to 128 unreserved characters")
    store = ctx.services.store
    code_hash = token_hash(code)
    record = await store.get_code(code_hash)
    if record is None:
        raise InvalidGrantError("the authorization code is invalid")
    if record.used_at is not None:
        # RFC 6749 §4.1.2: "If an authorization code is used more than once,
        # the authorization server MUST deny the request and SHOULD revoke
        # (when possible) all tokens previously issued based on that
        # authorization code."
        revoke_live(ctx.state, await store.revoke_code_grant(code_hash, ctx.now))
        log.warning("authorization code replayed; its grant is revoked (client_id=%s)", ctx.app.client_id)
        raise InvalidGrantError("the authorization code is invalid")
    if record.expires_at <= ctx.now:
        raise InvalidGrantError("the authorization code has expired")
    if not same(record.client_id, ctx.app.client_id):
        raise InvalidGrantError("the authorization code is invalid")
    if record.redirect_uri is not None:
        if redirect_uri is None or not same(redirect_uri, record.redirect_uri):
            raise InvalidGrantError("redirect_uri does not match the authorization request")
    elif redirect_uri is not None and redirect_uri not in ctx.app.redirect_uris:
        raise InvalidGrantError("redirect_uri does not match the authorization request")
    if record.code_challenge:
        if verifier is None:
            raise InvalidRequestError("code_verifier is missing")
        if not pkce.verify(verifier, record.code_challenge):
            raise InvalidGrantError("code_verifier does not match the code_challenge")
    elif verifier is not None:
        # RFC 9700 §2.1.1: "Authorization servers MUST mitigate PKCE Downgrade
        # Attacks by ensuring that a token request containing a code_verifier
        # parameter is accepted only if a code_challenge parameter was present
        # in the authorization request."
        raise InvalidGrantError("no code_challenge was sent with the authorization request")
    elif ctx.client.public:
        raise InvalidGrantError("a public client must use PKCE")
    user = active_user(ctx.settings, record.sub)
    if user is None and record.sub not in ctx.settings.users and await learn_provider_user(ctx.state, record.sub):
        ctx = attrs.evolve(ctx, settings=ctx.state.settings)  # a first login on another node, just learnt
        user = active_user(ctx.settings, record.sub)
    if user is None:
        raise InvalidGrantError("the user may not sign in")
    scopes = still_allowed(record.scope, ctx.app, user.scopes)
    refresh = wants_refresh(ctx.app, scopes)
    body, issued = await issue_tokens(ctx, record.sub, scopes, refresh=refresh)
    # The family remembers its login session: a logout there revokes it.
    issued = attrs.evolve(issued, sid=record.sid, auth_time=record.auth_time)
    add_id_token(ctx, body, record.sub, scopes, sid=record.sid, auth_time=record.auth_time, nonce=record.nonce)
    if not await store.redeem_code(code_hash, ctx.now, issued):
        # Lost a race with a concurrent exchange of the same code: a replay.
        revoke_live(ctx.state, await store.revoke_code_grant(code_hash, ctx.now))
        raise InvalidGrantError("the authorization code is invalid")
    return body


# -- refresh_token -------------------------------------------------------------


async def refresh_token(ctx: GrantContext) -> dict:
    """RFC 6749 §6, rotated on every use (RFC 9700 §4.14.2).

    "The requested scope MUST NOT include any scope not originally granted
    by the resource owner, and if omitted is treated as equal to the scope
    originally granted by the resource owner."  "If a new refresh token is
    issued, the refresh token scope MUST be identical to that of the
    refresh token included by the client in the request."

    A used token is a replay and revokes its family, unless it is a retry
    the reuse grace allows (:func:`realtime.oauth.families.may_retry`).
    """
    presented = required(ctx.form, "refresh_token")
    requested = parse_scope(ctx.form.get("scope"))
    store = ctx.services.store
    old_hash = token_hash(presented)
    record = await store.get_refresh(old_hash)
    if record is None or record.family_revoked:
        raise InvalidGrantError("the refresh token is invalid")
    if not same(record.client_id, ctx.app.client_id):
        # An unused token is only refused (it proves nothing about its owner's
        # chain); a used one in a stranger's hands is a replay (SPEC §2).
        if record.used_at is not None:
            raise await _revoke_replayed(ctx, record)
        raise InvalidGrantError("the refresh token is invalid")
    if record.used_at is not None and not may_retry(ctx.settings, record, ctx.now):
        raise await _revoke_replayed(ctx, record)
    if record.expires_at <= ctx.now or family_deadline(ctx.settings, record.family_created_at) <= ctx.now:
        raise InvalidGrantError("the refresh token has expired")
    user = active_user(ctx.settings, record.sub)
    if user is None:
        raise InvalidGrantError("the user may not sign in")
    if credential_changed(ctx.services.key, user, record):
        # L3: the password changed since the family began; whoever holds it
        # must sign in again with the new one.
        revoke_live(ctx.state, await store.revoke_family(record.family_id, ctx.now))
        log.info("refresh family of a changed credential revoked (client_id=%s)", ctx.app.client_id)
        raise InvalidGrantError("the refresh token is invalid")
    if requested is not None and not requested <= record.scope:
        raise InvalidScopeError("the requested scope exceeds the original grant")
    scopes = still_allowed(requested if requested is not None else record.scope, ctx.app, user.scopes)
    body, issued = await issue_tokens(
        ctx, record.sub, scopes, refresh=True, family_id=record.family_id, refresh_scope=record.scope,
        family_started=record.family_created_at,
    )
    # OIDC Core §12.2: a new ID Token on refresh, without a nonce.
    add_id_token(ctx, body, record.sub, scopes, sid=record.sid, auth_time=record.auth_time, nonce=None)
    if record.used_at is None and await store.rotate_refresh(old_hash, ctx.now, issued):
        return body
    # Used already (or just now, by a concurrent request): a retry if the
    # grace allows one more, decided by the store; else a replay.
    if ctx.settings.oauth.refresh_reuse_grace > 0:
        lost = await store.retry_refresh(
            old_hash, ctx.now, issued,
            grace=ctx.settings.oauth.refresh_reuse_grace, limit=ctx.settings.oauth.refresh_reuse_count,
        )
        if lost is not None:
            revoke_live(ctx.state, lost)
            # A warning: a replayed stolen token inside the grace looks the
            # same and takes the family over (the real client is signed out).
            log.warning("refresh token retried within the reuse grace; the earlier answer is revoked "
                        "(client_id=%s, sub=%s, address=%s)",
                        ctx.app.client_id, record.sub, ctx.request.client_host or "-")
            return body
    raise await _revoke_replayed(ctx, record)


async def _revoke_replayed(ctx: GrantContext, record: RefreshRecord) -> InvalidGrantError:
    """A used refresh token came back: revoke its family (RFC 9700 §4.14.2);
    returns the error to answer."""
    revoke_live(ctx.state, await ctx.services.store.revoke_family(record.family_id, ctx.now))
    log.warning("refresh token reused; its family is revoked (client_id=%s)", ctx.app.client_id)
    return InvalidGrantError("the refresh token is invalid")


# -- client_credentials --------------------------------------------------------


async def client_credentials(ctx: GrantContext) -> dict:
    """RFC 6749 §4.4: "The client credentials grant type MUST only be used by
    confidential clients."  §4.4.3: "A refresh token SHOULD NOT be included."
    The token's ``sub`` is the client's own id.
    """
    if ctx.client.public:
        raise UnauthorizedClientError("client_credentials needs a confidential client")
    scopes = grant_scopes(parse_scope(ctx.form.get("scope")), ctx.app, None) - {OFFLINE_ACCESS}
    body, _ = await issue_tokens(ctx, ctx.app.client_id, scopes, refresh=False)
    return body


# -- password -----------------------------------------------------------------


async def password(ctx: GrantContext) -> dict:
    """RFC 6749 §4.3, only for apps that list it (RFC 9700 §2.4: "The
    resource owner password credentials grant MUST NOT be used" — kept for
    operators who opt in per app).

    §4.3.2: "the authorization server MUST protect the endpoint against
    brute force attacks (e.g., using rate-limitation or generating alerts)."
    """
    username = required(ctx.form, "username")
    secret = required(ctx.form, "password")
    requested = parse_scope(ctx.form.get("scope"))
    if len(username) > MAX_USERNAME or len(secret) > MAX_PASSWORD_LENGTH:
        raise InvalidGrantError("invalid username or password")
    address = ctx.request.client_host or "-"
    user = await verify_login(ctx.services, ctx.settings.users, username, secret, address)
    if isinstance(user, Throttled):
        raise TooManyAttemptsError(user.retry_after)
    if isinstance(user, Busy):
        raise TemporarilyUnavailableError(user.retry_after)
    if user is None:
        log_failed_login("password grant", ctx.app.client_id, address, username)
        raise InvalidGrantError("invalid username or password")
    scopes = grant_scopes(requested, ctx.app, user)
    refresh = wants_refresh(ctx.app, scopes)
    body, issued = await issue_tokens(ctx, user.name, scopes, refresh=refresh)
    if refresh:
        await ctx.services.store.record_issue(ctx.now, issued)
    return body


# -- urn:ietf:params:oauth:grant-type:device_code (RFC 8628 §3.4) ------------------


async def device_code(ctx: GrantContext) -> dict:
    """The device's poll: the polling rules are :mod:`realtime.oauth.device`'s;
    the tokens go out once, to the poll that wins the store's redemption."""
    record = await approved_device_code(ctx.services, ctx.form.get("device_code"), ctx.client, ctx.now)
    assert record.sub is not None
    user = active_user(ctx.settings, record.sub)
    if user is None:
        raise InvalidGrantError("the user may not sign in")
    scopes = still_allowed(record.scope, ctx.app, user.scopes)
    body, issued = await issue_tokens(ctx, record.sub, scopes, refresh=wants_refresh(ctx.app, scopes))
    if not await ctx.services.store.redeem_device_code(record.device_hash, ctx.now, issued):
        raise InvalidGrantError("the device code was already used")  # a concurrent poll won
    return body


GRANTS: dict[str, Grant] = {
    "authorization_code": authorization_code,
    "refresh_token": refresh_token,
    "client_credentials": client_credentials,
    "password": password,
    DEVICE_GRANT: device_code,
}


async def token_endpoint(request: Request, state: OAuthApp) -> Response:
    """POST /oauth2/token: every grant, one error path."""
    services = state.oauth
    settings = state.settings  # one snapshot for the whole request
    now = services.clock()
    try:
        form = read_form(request)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise InvalidRequestError("grant_type is missing")
        grant = GRANTS.get(grant_type)
        if grant is None:
            raise UnsupportedGrantTypeError("unsupported grant_type")
        client = await authenticate_client(request, form, settings, services, now)
        if grant_type not in client.app.grant_types:
            raise UnauthorizedClientError("the client may not use this grant type")
        ctx = GrantContext(request, form, client, state, settings, services, now)
        body = await grant(ctx)
    except Exception as exc:
        return json_endpoint_failure(log, "token endpoint", exc)
    try:
        await services.maybe_sweep(now)
    except Exception:
        log.exception("store sweep failed")
    return json_response(200, body, NO_STORE)
