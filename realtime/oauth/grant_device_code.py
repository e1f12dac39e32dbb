"""The device_code grant (RFC 8628 §3.4): a device's poll, answered with tokens once.

The device flow itself (its codes, the polling rules, the user's
approval) is :mod:`realtime.oauth.device`'s; this is only the token
endpoint's end of it: issue for an approved code, store, answer.
"""

from __future__ import annotations

from realtime.oauth.common import active_user, wants_refresh
from realtime.oauth.device import approved_device_code
from realtime.oauth.errors import InvalidGrantError
from realtime.oauth.issuing import GrantContext, issue_tokens, still_allowed


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
