"""The ``authorization_code`` grant: a code from ``/oauth2/authorize`` for tokens.

RFC 6749 §4.1.3 with PKCE (RFC 7636).  A code is redeemed once: a replay,
or a concurrent exchange that loses the store's redemption, revokes all
that the code gave.  Separate from the other grants because only it reads
the authorization request's record (redirect_uri, code_challenge, the
login session and nonce it carries into the family and the id_token).
"""

from __future__ import annotations

import logging

import attrs

from realtime.oauth import pkce
from realtime.oauth.common import active_user, wants_refresh
from realtime.oauth.errors import InvalidGrantError, InvalidRequestError
from realtime.oauth.issuing import GrantContext, add_id_token, issue_tokens, required, revoke_live, same, still_allowed
from realtime.oauth.providers.users import learn as learn_provider_user
from realtime.store import token_hash

log = logging.getLogger("realtime.oauth")


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
