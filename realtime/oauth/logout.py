"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ``/oauth2/logout``.

GET or POST with ``id_token_hint``, ``client_id``,
``post_logout_redirect_uri`` and ``state``.  It ends the browser's login
session and revokes every refresh family and access token issued in it,
closing their live connections with 4003 on every node
(``state.revoke_access`` shares each revocation through the broker).

§2: "At the Logout Endpoint, the OP SHOULD ask the End-User whether to
log out of the OP as well.  Furthermore, the OP MUST ask the End-User
this question if an id_token_hint was not provided or if the supplied ID
Token does not belong to the current OP session with the RP".  So a
request without a valid hint (or whose hint names another user than the
browser's) shows a confirmation form with a CSRF token; only its POST
ends the session.

§3: "The OP MUST NOT perform post-logout redirection if the
post_logout_redirect_uri value supplied does not exactly match one of
the previously registered post_logout_redirect_uris values."  A URI that
does not match, or one sent without a way to know the client, gets an
error page: never a redirect (no open redirect).
"""

from __future__ import annotations

import hmac
import logging
from typing import Mapping

import attrs

from realtime.config.settings import App, Settings
from realtime.http import pages
from realtime.http.request import BadRequest, Request
from realtime.http.responses import Response
from realtime.oauth.authz_request import redirect_to
from realtime.oauth.common import single
from realtime.oauth.errors import InvalidRequestError
from realtime.oauth.idtoken import IdTokenHint, verify_hint
from realtime.oauth.services import CSRF_COOKIE, CSRF_TTL, OAuthApp, Session, set_cookie

from realtime.oauth.errors import STORE_UNAVAILABLE_PAGE, log_store_unavailable
from realtime.store import StoreUnavailable

log = logging.getLogger("realtime.oauth.logout")

LOGOUT_PATH = "/oauth2/logout"
PARAMS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales", "logout_hint")
FORM_EXTRA = ("csrf_token", "action")
MAX_STATE = 2048


class _Refused(Exception):
    """An invalid logout request: an error page, never a redirect."""


@attrs.frozen
class LogoutRequest:
    hint: IdTokenHint | None
    app: App | None
    redirect_uri: str | None  # registered for ``app``, exact match
    state: str | None
    params: dict[str, str]  # carried by the confirmation form


def _matches(uri: str, registered: tuple[str, ...]) -> bool:
    return any(hmac.compare_digest(uri.encode(), r.encode()) for r in registered)


def parse_logout(params: Mapping[str, str], state: OAuthApp, settings: Settings) -> LogoutRequest:
    hint_text = params.get("id_token_hint")
    hint = None
    if hint_text:
        hint = verify_hint(state.keyring, hint_text, issuer=settings.issuer)
        if hint is None:
            raise _Refused("The logout request carries an ID token that this server did not issue.")
    client_id = params.get("client_id") or (hint.client_id if hint else None)
    if hint is not None and client_id != hint.client_id:
        raise _Refused("The client_id does not match the ID token.")
    app = settings.apps.get(client_id) if client_id else None
    if client_id and app is None:
        raise _Refused("The application that sent you here is not registered.")
    uri = params.get("post_logout_redirect_uri")
    if uri is not None:
        if app is None:
            # §3: without client_id or id_token_hint the URI cannot be checked.
            raise _Refused("A post_logout_redirect_uri needs a client_id or an id_token_hint.")
        if not _matches(uri, app.post_logout_redirect_uris):
            raise _Refused("The post-logout redirect URI is not registered for this application.")
    logout_state = params.get("state")
    if logout_state is not None and len(logout_state) > MAX_STATE:
        raise _Refused("The state parameter is too long.")
    carried = {k: v for k, v in params.items() if k in ("client_id", "post_logout_redirect_uri", "state")}
    if app is not None and "client_id" not in carried:
        carried["client_id"] = app.client_id
    return LogoutRequest(hint=hint, app=app, redirect_uri=uri, state=logout_state, params=carried)


def _error(message: str) -> Response:
    return pages.page_response(400, pages.error_page("Logout refused", message))


async def logout_endpoint(request: Request, state: OAuthApp) -> Response:
    """GET|POST /oauth2/logout."""
    services = state.oauth
    settings = state.settings
    now = services.clock()
    try:
        multi = request.form() if request.method == "POST" else request.query
    except BadRequest:
        return _error("The form could not be read.")
    try:
        given = single({k: v for k, v in multi.items() if k in PARAMS + FORM_EXTRA})
        logout = parse_logout(given, state, settings)
    except InvalidRequestError as exc:
        return _error(exc.description or "The request is not valid.")
    except _Refused as exc:
        return _error(str(exc))
    try:
        current = await services.signed_in(request, settings, now)
        session = current[1] if current else None
        binding = services.read_binding(request)
        confirmed = request.method == "POST" and given.get("action") == "logout" and services.check_csrf(
            given.get("csrf_token"), "logout", f"{binding}|{session.sid if session else ''}", "logout", now)
        # The hint proves the RP asks; it must name the browser's user to act
        # on the browser's session without asking (§2).
        hint_covers = logout.hint is not None and (session is None or session.sub == logout.hint.sub)
        if not confirmed and not hint_covers:
            return _confirm(request, state, logout, session, binding, now)
        sids = {s for s in (session.sid if session else None, logout.hint.sid if logout.hint else None) if s}
        closed = 0
        for sid in sorted(sids):
            for jti, exp in await services.store.end_login_session(sid, now):
                closed += state.revoke_access(jti, exp)
        log.info("logout (client_id=%s, sessions=%d, connections closed=%d)",
                 logout.app.client_id if logout.app else "-", len(sids), closed)
        clear = (services.session_cookie("", request, 0), *services.legacy_session_cookie_removals(request))
        if logout.redirect_uri is not None:
            params = {"state": logout.state} if logout.state is not None else {}
            return redirect_to(logout.redirect_uri, params).with_headers(*clear)
        return pages.page_response(200, pages.error_page("Signed out", "You are signed out."), None, clear)
    except StoreUnavailable as exc:
        log_store_unavailable(log, "logout", exc)
        return pages.page_response(503, pages.error_page(*STORE_UNAVAILABLE_PAGE))
    except Exception:
        log.exception("logout failed")
        return pages.page_response(500, pages.error_page("Server error", "Something went wrong. Please try again."))


def _confirm(request: Request, state: OAuthApp, logout: LogoutRequest, session: Session | None,
             binding: str, now: float) -> Response:
    """The question §2 asks for, as a form bound to this browser (CSRF)."""
    services = state.oauth
    headers: tuple[tuple[str, str], ...] = ()
    if not binding:
        binding = services.new_binding()
        headers = (set_cookie(CSRF_COOKIE, binding, request, int(CSRF_TTL)),)
    hidden = dict(logout.params)
    hidden["csrf_token"] = services.csrf_token("logout", f"{binding}|{session.sid if session else ''}", "logout", now)
    user = None
    if session is not None:
        found = state.settings.users.get(session.sub)
        user = (found.display_name or found.name) if found else None
    html = pages.logout_page(hidden=hidden, app_name=logout.app.name if logout.app else None, user=user,
                             form_action=LOGOUT_PATH)
    return pages.page_response(200, html, logout.redirect_uri, headers)
