"""The authorization endpoint (RFC 6749 §3.1, §4.1.1–4.1.2): login, consent, code.

GET (or POST without ``action``) validates the authorization request and
shows the login form, the consent page, or redirects with a code.  POST
with ``action=login`` or ``action=consent`` handles the forms.

The request itself is checked by :mod:`realtime.oauth.authz_request`
(an error page when the client or redirect URI cannot be trusted, else a
redirect with ``error``, ``state`` and (RFC 9207 §2) ``iss``).

RFC 9700 §2.1: "Clients MUST prevent Cross-Site Request Forgery (CSRF)"
— our own forms carry a CSRF token bound to a browser cookie, the login
session and the authorization request itself.
"""

from __future__ import annotations

import logging
import secrets
from typing import Mapping
from urllib.parse import urlsplit

from realtime.http import pages
from realtime.http.request import BadRequest, Request
from realtime.http.responses import Response, redirect
from realtime.oauth.authz_request import (
    AUTHZ_PARAMS, AuthzRedirect, AuthzRequest, error_page, parse_request, redirect_params, redirect_to,
)
from realtime.oauth.common import consent_may_be_remembered, grant_scopes, single
from realtime.oauth.login import LoginRefused, check_password
from realtime.oauth.providers.flow import start_provider_login
from realtime.oauth.errors import (
    AccessDeniedError,
    ConsentRequiredError,
    InvalidRequestError,
    LoginRequiredError,
    OAuthError,
    retry_after_value,
)
from realtime.oauth.services import (
    CSRF_COOKIE, CSRF_TTL, SESSION_COOKIE, OAuthApp, OAuthServices, Session, read_cookie, set_cookie,
)
from realtime.config.settings import Settings, User
from realtime.store import token_hash

from realtime.oauth.errors import STORE_UNAVAILABLE_PAGE, log_store_unavailable
from realtime.store import StoreUnavailable

log = logging.getLogger("realtime.oauth")


class _Flow:
    """One authorization request being served, with its browser's cookies."""

    def __init__(self, request: Request, state: OAuthApp, services: OAuthServices,
                 settings: Settings, authz: AuthzRequest, now: float) -> None:
        self.request = request
        self.state = state
        self.services = services
        self.settings = settings
        self.authz = authz
        self.now = now
        self.set_cookies: list[tuple[str, str]] = []
        self.binding = services.read_binding(request)  # "" unless the server issued it
        self.session_cookie = read_cookie(request, SESSION_COOKIE)

    def ensure_binding(self) -> str:
        if not self.binding:
            self.binding = self.services.new_binding()
            self.set_cookies.append(set_cookie(CSRF_COOKIE, self.binding, self.request, int(CSRF_TTL)))
        return self.binding

    def hidden(self, purpose: str, sid: str = "") -> dict[str, str]:
        binding = self.ensure_binding()
        fields = dict(self.authz.params)
        fields["csrf_token"] = self.services.csrf_token(purpose, f"{binding}|{sid}", self.authz.flow(), self.now)
        return fields

    def csrf_ok(self, token: str | None, purpose: str, sid: str = "") -> bool:
        if not self.binding:
            return False
        return self.services.check_csrf(token, purpose, f"{self.binding}|{sid}", self.authz.flow(), self.now)

    def page(self, status: int, html: str, *headers: tuple[str, str], form_origins: tuple[str, ...] = ()) -> Response:
        return pages.page_response(
            status, html, self.authz.redirect_uri, tuple(self.set_cookies) + tuple(headers), form_origins
        )

    def login(self, status: int = 200, error: str | None = None, username: str = "",
              *headers: tuple[str, str]) -> Response:
        username = username or self.authz.login_hint
        providers = tuple(self.settings.providers.values())  # "Log in with X" (realtime.oauth.providers.flow)
        html = pages.login_page(app_name=self.authz.app.name, hidden=self.hidden("login"),
                                username=username, error=error,
                                providers=[(p.name, p.display_name) for p in providers])
        return self.page(status, html, *headers, form_origins=tuple(p.origin for p in providers))

    def back(self, params: Mapping[str, str]) -> Response:
        response = redirect_to(self.authz.redirect_uri, redirect_params(self.settings, self.authz.state, params))
        return response.with_headers(*self.set_cookies)

    def fail(self, error: OAuthError) -> Response:
        return self.back(error.params())

    async def proceed(self, user: User, session: Session, *, force_consent: bool = False) -> Response:
        """Logged in: consent page, or straight to the client with a code."""
        authz = self.authz
        try:
            granted = grant_scopes(authz.scope, authz.app, user)
        except OAuthError as exc:
            return self.fail(exc)
        remembered = await self.services.store.get_consent(user.name, authz.app.client_id)
        if (remembered is not None and granted <= remembered and not force_consent
                and consent_may_be_remembered(authz.app, authz.redirect_uri)):
            return await self.issue_code(user, granted, session)
        if "none" in authz.prompt:
            return self.fail(ConsentRequiredError("consent is required"))
        host = urlsplit(authz.redirect_uri).netloc or authz.redirect_uri
        html = pages.consent_page(app_name=authz.app.name, user=user.display_name or user.name,
                                  scopes=granted, hidden=self.hidden("consent", session.sid),
                                  redirect_host=host)
        return self.page(200, html)

    async def issue_code(self, user: User, granted: frozenset[str], session: Session) -> Response:
        """RFC 6749 §4.1.2: "The authorization code MUST expire shortly after
        it is issued ... A maximum authorization code lifetime of 10 minutes
        is RECOMMENDED." Ours: ``[oauth] code_ttl`` (60 s), single use."""
        code = secrets.token_urlsafe(32)
        await self.services.store.save_code(
            token_hash(code),
            client_id=self.authz.app.client_id,
            redirect_uri=self.authz.redirect_uri if self.authz.redirect_given else None,
            code_challenge=self.authz.code_challenge,
            sub=user.name,
            scope=granted,
            expires_at=self.now + self.settings.oauth.code_ttl,
            sid=session.sid,
            nonce=self.authz.nonce,
            auth_time=session.auth_time,
        )
        return self.back({"code": code})


async def _current_user(flow: _Flow) -> tuple[User, Session] | None:
    session = await flow.services.read_session(flow.session_cookie, flow.now)
    if session is None:
        return None
    user = flow.services.session_user(session, flow.settings)
    return (user, session) if user is not None else None


async def _start_session(flow: _Flow, user: User) -> Session:
    """A sign-in: a new session cookie (the old one, if any, ends: no fixation)."""
    ttl = flow.settings.oauth.session_ttl
    cookie = await flow.services.make_session(user, flow.now, ttl, replacing=flow.session_cookie)
    flow.set_cookies.append(flow.services.session_cookie(cookie, flow.request, int(ttl)))
    flow.set_cookies.extend(flow.services.legacy_session_cookie_removals(flow.request))
    flow.session_cookie = cookie
    session = await flow.services.read_session(cookie, flow.now)
    if session is None:  # just written; only a store failure gets here
        raise RuntimeError("the new login session could not be read back")
    return session


def _too_old(flow: _Flow, session: Session) -> bool:
    """OIDC Core §3.1.2.1 max_age: "If the elapsed time is greater than this
    value, the OP MUST attempt to actively re-authenticate the End-User"."""
    return flow.authz.max_age is not None and flow.now - session.auth_time > flow.authz.max_age


async def _start(flow: _Flow) -> Response:
    """A fresh authorization request: login form, consent page or code."""
    current = None if "login" in flow.authz.prompt else await _current_user(flow)
    if current is not None and _too_old(flow, current[1]):
        current = None
    if current is None:
        if "none" in flow.authz.prompt:
            return flow.fail(LoginRequiredError("the user is not signed in"))
        return flow.login()
    user, session = current
    return await flow.proceed(user, session, force_consent="consent" in flow.authz.prompt)


async def _login(flow: _Flow, form: Mapping[str, str]) -> Response:
    if not flow.csrf_ok(form.get("csrf_token"), "login"):
        return flow.login(403, "The form has expired. Please sign in again.")
    user = await check_password(flow.services, flow.settings.users, flow.request, form,
                                client_id=flow.authz.app.client_id, protocol="oauth2")
    if isinstance(user, LoginRefused):
        return flow.login(user.status, user.message, user.username, *user.headers)
    session = await _start_session(flow, user)
    return await flow.proceed(user, session, force_consent="consent" in flow.authz.prompt)


async def _consent(flow: _Flow, form: Mapping[str, str]) -> Response:
    current = await _current_user(flow)
    if current is None:
        return flow.login(200, "Please sign in again.")
    user, session = current
    if not flow.csrf_ok(form.get("csrf_token"), "consent", session.sid):
        return error_page(403, "Request refused", "The consent form has expired or was not sent by this browser.")
    decision = form.get("decision")
    if decision == "deny":
        return flow.fail(AccessDeniedError("the user denied the request"))
    if decision != "allow":
        return flow.fail(InvalidRequestError("unknown consent decision"))
    try:
        granted = grant_scopes(flow.authz.scope, flow.authz.app, user)
    except OAuthError as exc:
        return flow.fail(exc)
    await flow.services.store.save_consent(user.name, flow.authz.app.client_id, granted, flow.now)
    return await flow.issue_code(user, granted, session)


async def _provider_login(flow: _Flow, form: Mapping[str, str]) -> Response:
    """``action=provider``: off to the provider (:mod:`realtime.oauth.providers.flow`)."""
    if not flow.csrf_ok(form.get("csrf_token"), "login"):
        return flow.login(403, "The form has expired. Please sign in again.")
    provider = flow.settings.providers.get(form.get("provider", ""))
    if provider is None:
        return flow.login(400, "That sign-in option is not available.")
    # Each start stores a pending login: limited per address before the write.
    address = flow.request.client_host or "-"
    throttle = flow.services.provider_start_throttle
    wait = throttle.retry_after(address, flow.now)
    if wait > 0:
        return flow.login(429, "Too many sign-in attempts. Try again later.", "",
                          ("retry-after", retry_after_value(wait)))
    throttle.spend(address, flow.now)
    url = await start_provider_login(flow.services.logins, provider, issuer=flow.settings.issuer,
                                     params=flow.authz.params, binding=flow.binding,
                                     client_id=flow.authz.app.client_id, address=address, now=flow.now)
    return redirect(url).with_headers(*flow.set_cookies)


async def authorize_endpoint(request: Request, state: OAuthApp) -> Response:
    """GET/POST /oauth2/authorize."""
    services = state.oauth
    settings = state.settings
    now = services.clock()
    if request.method == "POST":
        try:
            multi = request.form()
        except BadRequest:
            return error_page(400, "Invalid request", "The form could not be read.")
    else:
        multi = request.query
    try:
        parsed = parse_request(multi, settings)
        if isinstance(parsed, Response):
            return parsed
        flow = _Flow(request, state, services, settings, parsed, now)
        if request.method != "POST":
            return await _start(flow)
        try:
            extra = single({k: v for k, v in multi.items() if k not in AUTHZ_PARAMS})
        except InvalidRequestError as exc:
            return flow.fail(exc)
        action = extra.get("action")
        if action == "login":
            return await _login(flow, extra)
        if action == "consent":
            return await _consent(flow, extra)
        if action == "provider":
            return await _provider_login(flow, extra)
        if action is None:
            return await _start(flow)  # RFC 6749 §3.1: POST may carry the request
        return flow.fail(InvalidRequestError("unknown action"))
    except AuthzRedirect as exc:
        return redirect_to(exc.redirect_uri, redirect_params(settings, exc.state, exc.error.params()))
    except OAuthError as exc:
        return error_page(exc.status_code, "Request refused", exc.description or exc.error)
    except StoreUnavailable as exc:
        log_store_unavailable(log, "authorization endpoint", exc)
        return error_page(503, *STORE_UNAVAILABLE_PAGE)
    except Exception:
        log.exception("authorization endpoint failed")
        return error_page(500, "Server error", "Something went wrong. Please try again.")


async def resume_login(request: Request, state: OAuthApp, params: Mapping[str, str], user: User) -> Response:
    """Go on with a pending authorization request once ``user`` signed in
    elsewhere (an external provider, :mod:`realtime.oauth.providers.flow`):
    start a session, then consent or the code, as after a password login.

    ``params`` is the request as the login form carried it; it is checked
    again against the current snapshot (the app may have gone meanwhile).
    """
    services = state.oauth
    settings = state.settings
    try:
        parsed = parse_request({k: [v] for k, v in params.items()}, settings)
        if isinstance(parsed, Response):
            return parsed
        flow = _Flow(request, state, services, settings, parsed, services.clock())
        session = await _start_session(flow, user)
        return await flow.proceed(user, session, force_consent="consent" in parsed.prompt)
    except AuthzRedirect as exc:
        return redirect_to(exc.redirect_uri, redirect_params(settings, exc.state, exc.error.params()))
