"""The ``refresh_token`` grant: rotation on every use, and reuse detection.

RFC 6749 §6, rotated as RFC 9700 §4.14.2 asks: each use answers a new
refresh token of the same family and spends the old one; a spent token
that comes back is a replay and revokes its family, unless the reuse
grace takes it for a retry.  The family's own rules (absolute lifetime,
credential binding, the grace) are :mod:`realtime.oauth.families`'s; this
module applies them to a presented token, which is why it stands apart
from the grants that start a family.
"""

from __future__ import annotations

import logging

from realtime.oauth.common import active_user, parse_scope
from realtime.oauth.errors import InvalidGrantError, InvalidScopeError
from realtime.oauth.families import credential_changed, family_deadline, may_retry
from realtime.oauth.issuing import GrantContext, add_id_token, issue_tokens, required, revoke_live, same, still_allowed
from realtime.store import RefreshRecord, token_hash

log = logging.getLogger("realtime.oauth")


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
