"""The ``password`` grant: a user's name and password for tokens, for apps that opt in.

RFC 6749 §4.3.  The only grant that checks a password itself, so the only
one that goes through the login throttle and argon2
(:func:`realtime.oauth.login.verify_login`).
"""

from __future__ import annotations

from realtime.oauth.common import grant_scopes, parse_scope, wants_refresh
from realtime.oauth.errors import InvalidGrantError, TemporarilyUnavailableError, TooManyAttemptsError
from realtime.oauth.issuing import GrantContext, issue_tokens, required
from realtime.oauth.login import MAX_USERNAME, Busy, Throttled, log_failed_login, verify_login
from realtime.config.users import MAX_PASSWORD_LENGTH


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
