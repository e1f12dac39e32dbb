"""GET /oauth2/callback/NAME: the provider sends the browser back (step 2
of :mod:`realtime.oauth.providers.flow`), and the login goes on through
:func:`realtime.oauth.authorize.resume_login`.

A module of its own so that the flow's start (called by ``authorize``)
and its end (which calls ``authorize``) do not import each other.  The
``state`` must be one we issued, to this browser, for this provider,
within ten minutes, and not used yet: RFC 6749 §10.12 "The client MUST
implement CSRF protection for its redirection URI ... binding the value
... to the user-agent's authenticated state".  Ours is bound to the
``rt_csrf`` cookie of the browser that started it.  Every failure shows
a page and logs the provider and a reason, never a code, token, state or
secret.
"""

from __future__ import annotations

import hmac
import logging
from functools import partial
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlencode

import attrs

from realtime.config.edit import EditError, locked
from realtime.config.login_provider import Provider, ProviderError, safe_code
from realtime.config.settings import User
from realtime.http import pages
from realtime.http.request import Request
from realtime.http.responses import Response
from realtime.oauth.authorize import resume_login
from realtime.oauth.common import single
from realtime.oauth.errors import STORE_UNAVAILABLE_PAGE, InvalidRequestError, log_store_unavailable
from realtime.oauth.providers.pending import digest
from realtime.oauth.providers.flow import CALLBACK_PREFIX, append_user, new_user
from realtime.oauth.providers.outbound import ProviderTimeout, ProviderUnreachable
from realtime.oauth.providers.users import as_user, merged
from realtime.oauth.services import OAuthApp
from realtime.store import StoreUnavailable
from realtime.store.provider_users import StoredUser

log = logging.getLogger("realtime.oauth.providers")


def _page(status: int, title: str, message: str, retry: str | None = None) -> Response:
    link = (retry, "Back to sign in") if retry else None
    return pages.page_response(status, pages.error_page(title, message, link))


async def callback_endpoint(request: Request, state: OAuthApp) -> Response:
    """GET /oauth2/callback/NAME: the provider's answer (RFC 6749 §4.1.2)."""
    name = request.path[len(CALLBACK_PREFIX):]
    provider = state.settings.providers.get(name)
    if provider is None:
        return _page(404, "Unknown sign-in provider", "This sign-in provider is not configured here.")
    if request.method != "GET":  # HEAD (a link checker, a prefetch) must not use up the state
        return _page(200, "Sign-in", "Open this address with GET to finish signing in.")
    try:
        params = single(request.query)
    except InvalidRequestError:
        return _page(400, "Sign-in failed", "The answer from the sign-in provider could not be read.")
    services = state.oauth
    now = services.clock()
    given = params.get("state", "")
    try:
        pending = await services.logins.take(given, now) if 0 < len(given) <= 200 else None
    except StoreUnavailable as exc:
        log_store_unavailable(log, "provider callback", exc)
        return pages.page_response(503, pages.error_page(*STORE_UNAVAILABLE_PAGE))
    binding = services.read_binding(request)
    if (pending is None or pending.provider != name or not binding
            or not hmac.compare_digest(digest(binding), pending.binding)):
        log.warning("provider callback refused: unknown, expired, used or foreign state (provider=%s)", name)
        return _page(400, "Sign-in expired",
                     "This sign-in was not started in this browser, has expired or was already used. "
                     "Please go back to the application and start again.")
    retry = "/oauth2/authorize?" + urlencode(pending.params)
    label = provider.display_name
    if "error" in params:
        error = safe_code(params["error"])
        log.info("provider login: %s answered error=%s", name, error)
        if error == "access_denied":
            return _page(403, "Sign-in cancelled", f"{label} did not let you sign in (access was denied).", retry)
        return _page(502, "Sign-in failed", f"{label} reported an error ({error}).", retry)
    code = params.get("code")
    if not code:
        log.warning("provider login: %s sent no code", name)
        return _page(502, "Sign-in failed", f"{label} sent no authorization code.", retry)
    try:
        http = services.provider_http
        token = await http.exchange_code(provider, code=code, redirect_uri=pending.redirect_uri,
                                         verifier=pending.verifier)
        profile = await http.fetch_profile(provider, token)
        sub = provider.sub_for(provider.read_profile_id(profile))
    except ProviderTimeout as exc:
        log.warning("provider login: %s timed out: %s", name, exc)
        return _page(504, "Sign-in failed", f"{label} did not answer in time. Please try again later.", retry)
    except ProviderUnreachable as exc:
        log.warning("provider login: %s unreachable: %s", name, exc)
        return _page(502, "Sign-in failed", f"{label} could not be reached. Please try again later.", retry)
    except ProviderError as exc:
        log.warning("provider login: %s failed: %s", name, exc)
        return _page(502, "Sign-in failed", f"{label} did not complete the sign-in.", retry)
    user = state.settings.users.get(sub)
    if user is None:
        if not provider.auto_create:
            log.info("provider login refused: %s is not a user here (auto_create is off)", sub)
            return _page(403, "No account here",
                         f"Your {label} account is not linked to an account here. "
                         f"Ask the operator to add the user {sub}.", retry)
        try:
            user = await create_user(state, provider, sub, profile)
        except StoreUnavailable as exc:
            log_store_unavailable(log, "provider callback", exc)
            return pages.page_response(503, pages.error_page(*STORE_UNAVAILABLE_PAGE))
        except (OSError, ProviderError) as exc:
            log.error("provider login: could not add user %s: %s", sub, exc)
            return _page(500, "Sign-in failed", "Your account could not be created. Please try again later.")
    if user.disabled:
        log.info("provider login refused: %s is disabled", sub)
        return _page(403, "Account disabled", "This account is disabled.")
    log.info("provider login: %s signed in through %s", sub, name)
    return await resume_login(request, state, pending.params, user)


async def create_user(state: OAuthApp, provider: Provider, sub: str, profile: Mapping[str, Any]) -> User:
    """Add ``sub``: to the store on a shared store (every node must know it,
    :mod:`realtime.oauth.providers.users`), else to the users file; then
    to the running snapshot."""
    if state.settings.store.url is not None:
        return await _store_user(state, provider, sub, profile)
    return await _file_user(state, provider, sub, profile)


async def _store_user(state: OAuthApp, provider: Provider, sub: str, profile: Mapping[str, Any]) -> User:
    """The users file wins (the caller found no file user named ``sub``); a
    file user or a stored one differing only in case refuses the login.  Of
    two first logins of one user, on one node or two, the store keeps the
    first and both get it."""
    user = new_user(provider, sub, profile)
    for name in state.settings.users:
        if name.casefold() == sub.casefold() and name != sub:
            raise ProviderError(f"{sub!r} differs only in case from the existing user {name!r}")
    row = StoredUser(name=sub, provider=provider.name, subject=sub[len(provider.name) + 1:],
                     scopes=frozenset(user.scopes), display_name=user.display_name, email=user.email,
                     created_at=state.oauth.clock())
    stored = await state.oauth.store.add_provider_user(row)
    if stored.name != sub:
        raise ProviderError(f"{sub!r} differs only in case from the existing user {stored.name!r}")
    if stored == row:
        log.info("provider login: added user %s (scopes %s) to the store", sub, " ".join(user.scopes) or "-")
    known = state.oauth.provider_users
    before = dict(known.users)
    known.add(as_user(stored))
    state.settings = merged(state.settings, known.users, before)
    return state.settings.users[sub]


async def _file_user(state: OAuthApp, provider: Provider, sub: str, profile: Mapping[str, Any]) -> User:
    """Add ``sub`` to the users file (the operator sees, disables or removes
    it there like any user), then to the running snapshot.

    One writer per process (the users offload runs one call at a time), and
    the file lock the operator's commands take keeps out theirs; a
    user already in the file (a reload has not caught up yet) is not
    written twice, and one another login added meanwhile is returned.
    """
    path = state.settings.oauth.users
    if path is None:
        raise ProviderError("no [oauth] users file to add users to")
    user = new_user(provider, sub, profile)
    current = state.settings.users.get(sub)
    if current is not None:
        return current
    await state.oauth.users_offload(partial(_append_locked, path, user))
    settings = state.settings
    current = settings.users.get(sub)
    if current is not None:
        return current  # a concurrent first login of the same user got there first
    state.settings = attrs.evolve(settings, users={**settings.users, sub: user})
    log.info("provider login: added user %s (scopes %s) to %s", sub, " ".join(user.scopes) or "-", path)
    return user


def _append_locked(path: Path, user: User) -> None:
    """Blocking (the users offload runs it in a worker thread): add ``user``
    under the lock ``realtime user ...`` takes, so neither loses the other's edit."""
    try:
        with locked(path):
            append_user(path, user)
    except EditError as exc:
        raise ProviderError(str(exc)) from None
