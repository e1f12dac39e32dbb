"""The authorization endpoint (RFC 6749 §3.1, §4.1.1–4.1.2): login, consent, code.

GET (or POST without ``action``) validates the authorization request and
shows the login form, the consent page, or redirects with a code.  POST
with ``action=login`` or ``action=consent`` handles the forms.

RFC 6749 §4.1.2.1: "If the request fails due to a missing, invalid, or
mismatching redirection URI, or if the client identifier is missing or
invalid, the authorization server SHOULD inform the resource owner of the
error and MUST NOT automatically redirect the user-agent to the invalid
redirection URI."  Every other error redirects with ``error``, ``state``
and (RFC 9207 §2) ``iss``.

RFC 9700 §2.1: "Clients MUST prevent Cross-Site Request Forgery (CSRF)"
— our own forms carry a CSRF token bound to a browser cookie, the login
session and the authorization request itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from typing import Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit

import attrs

from realtime.http import pages
from realtime.http.request import BadRequest, Request
from realtime.http.responses import Response, redirect
from realtime.oauth import pkce
from realtime.oauth.common import consent_may_be_remembered, grant_scopes, parse_scope, single
from realtime.oauth.login import LoginRefused, check_password
from realtime.oauth.providers.flow import start_provider_login
from realtime.oauth.errors import (
    AccessDeniedError,
    ConsentRequiredError,
    InvalidRequestError,
    LoginRequiredError,
    OAuthError,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
)
from realtime.oauth.services import (
    CSRF_COOKIE, CSRF_TTL, SESSION_COOKIE, OAuthApp, OAuthServices, Session, read_cookie, set_cookie,
)
from realtime.config.settings import App, Settings, User
from realtime.store import token_hash

log = logging.getLogger("realtime.oauth")

#: The parameters of an authorization request that the forms carry along.
AUTHZ_PARAMS = (
    "response_type", "client_id", "redirect_uri", "scope", "state",
    "code_challenge", "code_challenge_method", "prompt",
    "nonce", "max_age", "login_hint",  # OpenID Connect Core §3.1.2.1
)
MAX_NONCE = 512  # characters; longer is invalid_request (it is echoed in every id_token)
MAX_LOGIN_HINT = 256
PROMPTS = {"none", "login", "consent"}


@attrs.frozen
class AuthzRequest:
    app: App
    redirect_uri: str  # where to send the browser (registered, exact match)
    redirect_given: bool  # whether the request named it (RFC 6749 §4.1.3)
    scope: frozenset[str] | None  # None: the app's default
    state: str | None
    code_challenge: str | None
    prompt: frozenset[str]
    params: dict[str, str]  # the request as received, for the forms
    nonce: str | None = None  # OIDC: echoed exactly in the id_token
    max_age: int | None = None  # OIDC: sign in again when the last sign-in is older (seconds)
    login_hint: str = ""  # OIDC: prefills the user name

    def flow(self) -> str:
        """A digest binding a CSRF token to this very request."""
        canon = json.dumps(sorted(self.params.items()), separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()


class _Redirect(Exception):
    def __init__(self, error: OAuthError, req_redirect: str, state: str | None) -> None:
        super().__init__(error.error)
        self.error = error
        self.redirect_uri = req_redirect
        self.state = state


def _error_page(status: int, title: str, message: str) -> Response:
    return pages.page_response(status, pages.error_page(title, message))


def redirect_to(uri: str, params: Mapping[str, str]) -> Response:
    """RFC 6749 §3.1.2: "The endpoint URI MAY include an
    "application/x-www-form-urlencoded" formatted ... query component,
    which MUST be retained when adding additional query parameters."
    """
    parts = urlsplit(uri)
    extra = urlencode(list(params.items()))
    query = f"{parts.query}&{extra}" if parts.query else extra
    return redirect(urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")), 302)


def _redirect_params(settings: Settings, state: str | None, params: Mapping[str, str]) -> dict[str, str]:
    out = dict(params)
    if state is not None:
        out["state"] = state
    # RFC 9207 §2: "the authorization server MUST ... include the iss parameter"
    out["iss"] = settings.issuer
    return out


def parse_request(multi: Mapping[str, list[str]], settings: Settings) -> AuthzRequest | Response:
    """Validate an authorization request.

    Returns an error page (client or redirect URI not to be trusted) or the
    request; raises :class:`_Redirect` for errors the client should hear.
    """
    for name in ("client_id", "redirect_uri"):
        if len(multi.get(name, ())) > 1:
            return _error_page(400, "Invalid request", f"The {name} parameter is repeated.")
    client_id = (multi.get("client_id") or [""])[0]
    app = settings.apps.get(client_id) if client_id else None
    if app is None:
        return _error_page(400, "Unknown application", "The application that sent you here is not registered.")
    given = (multi.get("redirect_uri") or [""])[0]
    if given:
        # Exact string comparison (RFC 9700 §4.1.3: "exact string matching").
        if not any(hmac.compare_digest(given.encode(), uri.encode()) for uri in app.redirect_uris):
            return _error_page(400, "Invalid redirect URI", "The redirect URI is not registered for this application.")
        redirect_uri = given
    elif len(app.redirect_uris) == 1:
        redirect_uri = app.redirect_uris[0]
    else:
        return _error_page(400, "Invalid redirect URI", "The request must name one of the registered redirect URIs.")

    state_values = multi.get("state") or [None]
    state = state_values[0] if len(state_values) == 1 else None
    try:
        params = single({k: v for k, v in multi.items() if k in AUTHZ_PARAMS})
    except InvalidRequestError as exc:
        raise _Redirect(exc, redirect_uri, state) from None
    state = params.get("state")

    def fail(error: OAuthError) -> _Redirect:
        return _Redirect(error, redirect_uri, state)

    response_type = params.get("response_type")
    if not response_type:
        raise fail(InvalidRequestError("response_type is missing"))
    if response_type != "code":
        raise fail(UnsupportedResponseTypeError("only response_type=code is supported"))
    if "authorization_code" not in app.grant_types:
        raise fail(UnauthorizedClientError("the client may not use the authorization code grant"))
    try:
        scope = parse_scope(params.get("scope"))
        grant_scopes(scope, app, None)  # invalid_scope for a scope the app may never have
    except OAuthError as exc:
        raise fail(exc) from None
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is None:
        if method is not None:
            raise fail(InvalidRequestError("code_challenge_method without code_challenge"))
        if app.public:
            # RFC 9700 §2.1.1 / SPEC §3: public clients must use PKCE.
            raise fail(InvalidRequestError("code_challenge is required (PKCE, S256)"))
    else:
        if method != "S256":
            # RFC 7636 §4.3: the method "defaults to "plain" if not present";
            # plain is not supported here.
            raise fail(InvalidRequestError("code_challenge_method must be S256"))
        if not pkce.valid_challenge(challenge):
            raise fail(InvalidRequestError("code_challenge must be 43 base64url characters"))
    prompt = frozenset((params.get("prompt") or "").split())
    if not prompt <= PROMPTS or ("none" in prompt and len(prompt) > 1):
        raise fail(InvalidRequestError("unsupported prompt value"))
    nonce = params.get("nonce")
    if nonce is not None and not 0 < len(nonce) <= MAX_NONCE:
        raise fail(InvalidRequestError(f"nonce must be 1 to {MAX_NONCE} characters"))
    max_age_text = params.get("max_age")
    max_age = None
    if max_age_text is not None:
        # OIDC Core §3.1.2.1: "Specifies the allowable elapsed time in seconds".
        if not max_age_text.isascii() or not max_age_text.isdigit() or len(max_age_text) > 10:
            raise fail(InvalidRequestError("max_age must be a whole number of seconds"))
        max_age = int(max_age_text)
    return AuthzRequest(
        app=app, redirect_uri=redirect_uri, redirect_given=bool(given), scope=scope, state=state,
        code_challenge=challenge, prompt=prompt, params=params, nonce=nonce, max_age=max_age,
        login_hint=(params.get("login_hint") or "")[:MAX_LOGIN_HINT],
    )


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
        response = redirect_to(self.authz.redirect_uri, _redirect_params(self.settings, self.authz.state, params))
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
    user = await check_password(flow.services, flow.settings.users, flow.request, form, flow.now,
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
        return _error_page(403, "Request refused", "The consent form has expired or was not sent by this browser.")
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


def _provider_login(flow: _Flow, form: Mapping[str, str]) -> Response:
    """``action=provider``: off to the provider (:mod:`realtime.oauth.providers.flow`)."""
    if not flow.csrf_ok(form.get("csrf_token"), "login"):
        return flow.login(403, "The form has expired. Please sign in again.")
    provider = flow.settings.providers.get(form.get("provider", ""))
    if provider is None:
        return flow.login(400, "That sign-in option is not available.")
    url = start_provider_login(flow.services.logins, provider, issuer=flow.settings.issuer,
                               params=flow.authz.params, binding=flow.binding,
                               client_id=flow.authz.app.client_id, now=flow.now)
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
            return _error_page(400, "Invalid request", "The form could not be read.")
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
            return _provider_login(flow, extra)
        if action is None:
            return await _start(flow)  # RFC 6749 §3.1: POST may carry the request
        return flow.fail(InvalidRequestError("unknown action"))
    except _Redirect as exc:
        return redirect_to(exc.redirect_uri, _redirect_params(settings, exc.state, exc.error.params()))
    except OAuthError as exc:
        return _error_page(exc.status_code, "Request refused", exc.description or exc.error)
    except Exception:
        log.exception("authorization endpoint failed")
        return _error_page(500, "Server error", "Something went wrong. Please try again.")


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
    except _Redirect as exc:
        return redirect_to(exc.redirect_uri, _redirect_params(settings, exc.state, exc.error.params()))
