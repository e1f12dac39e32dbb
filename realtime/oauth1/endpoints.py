"""The OAuth 1.0a endpoints (RFC 5849 §2): temporary credentials, resource
owner authorization, token credentials, and revocation.

* ``POST /oauth1/request_token``: signed with the client credentials,
  ``oauth_callback`` required (an exact registered redirect URI, or
  ``oob``), optional ``scope``; answers ``oauth_token``,
  ``oauth_token_secret``, ``oauth_callback_confirmed=true``.
* ``GET /oauth1/authorize?oauth_token=...``: the OAuth 2 login and consent
  pages; then a redirect to the callback with ``oauth_token`` and
  ``oauth_verifier``, or (``oob``) a page showing the verifier.
* ``POST /oauth1/access_token``: signed with the request token and
  carrying ``oauth_verifier``; answers the access token and its secret.
* ``POST /oauth1/revoke``: signed with an access token; revokes it and
  closes its live sockets with 4003.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Mapping
from urllib.parse import urlencode, urlsplit

from realtime.http import pages
from realtime.http.request import BadRequest, Request
from realtime.http.responses import Response
from realtime.oauth.authorize import redirect_to
from realtime.oauth.common import active_user, grant_scopes, https_redirect, parse_scope
from realtime.oauth.login import LoginRefused, check_password
from realtime.oauth.errors import OAuthError
from realtime.oauth.services import (
    CSRF_COOKIE, CSRF_TTL, SESSION_COOKIE, OAuthServices, read_cookie, set_cookie,
)
from realtime.oauth1.credentials import Kind, OAuth1App, OAuth1Services, authenticate
from realtime.oauth1.errors import FORM, NO_STORE, OAuth1Error
from realtime.oauth1.resource import claims_for
from realtime.config.settings import App, User
from realtime.store import OAuth1AccessToken, OAuth1RequestToken, token_hash

from realtime.oauth.errors import STORE_UNAVAILABLE_PAGE, log_store_unavailable
from realtime.store import StoreUnavailable

log = logging.getLogger("realtime.oauth1")

AUTHORIZE_PATH = "/oauth1/authorize"
COOKIE_PATH = "/oauth1"
OOB = "oob"
#: RFC 5849 §2.1 leaves the lifetime to the server; long enough to sign in.
REQUEST_TOKEN_TTL = 600.0


def form_response(params: Mapping[str, str], status: int = 200) -> Response:
    """RFC 5849 §2.1: "The response contains ... using the
    "application/x-www-form-urlencoded" content type"."""
    return Response(status, (("content-type", FORM),) + NO_STORE, urlencode(list(params.items())).encode())


def _callback_allowed(callback: str, app: App) -> bool:
    """``oob``, or a registered redirect URI: exact match, or the same
    scheme, host and path with a query of the consumer's own."""
    if callback == OOB:
        return True
    try:
        given = urlsplit(callback)
    except ValueError:
        return False
    if given.fragment or not given.scheme:
        return False
    for uri in app.redirect_uris:
        if hmac.compare_digest(callback.encode(), uri.encode()):
            return True
        reg = urlsplit(uri)
        if not reg.query and (given.scheme, given.netloc, given.path) == (reg.scheme, reg.netloc, reg.path):
            return True
    return False


# -- /oauth1/request_token -------------------------------------------------------


async def request_token_endpoint(request: Request, state: OAuth1App) -> Response:
    """RFC 5849 §2.1, temporary credentials."""
    try:
        verified = await authenticate(request, state, Kind.TEMPORARY)
        signed, app = verified.signed, verified.app
        callback = signed.callback
        if callback is None:
            # §2.1: "oauth_callback: An absolute URI back to which the server
            # will redirect the resource owner ... or "oob""
            raise OAuth1Error("parameter_absent", "oauth_callback is required (a registered redirect URI or oob)",
                              oauth_parameters_absent="oauth_callback")
        if not _callback_allowed(callback, app):
            raise OAuth1Error("parameter_rejected", "oauth_callback is not a registered redirect URI of this app",
                              oauth_parameters_rejected="oauth_callback")
        try:
            scope = grant_scopes(parse_scope(signed.param("scope")), app, None)
        except OAuthError:
            raise OAuth1Error("parameter_rejected", "the consumer may not ask for one of these scopes",
                              oauth_parameters_rejected="scope") from None
        services = state.oauth1
        token, secret = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
        hashed = token_hash(token)
        await services.store.oauth1_save_request_token(
            hashed, client_id=app.client_id, secret_enc=services.seal(secret, hashed),
            callback=callback, scope=scope, expires_at=services.clock() + REQUEST_TOKEN_TTL,
        )
    except OAuth1Error as exc:
        return exc.form_response()
    return form_response({"oauth_token": token, "oauth_token_secret": secret, "oauth_callback_confirmed": "true"})


# -- /oauth1/access_token ----------------------------------------------------------


async def access_token_endpoint(request: Request, state: OAuth1App) -> Response:
    """RFC 5849 §2.3, token credentials: "the server MUST verify ... the
    validity of the verification code"; the request token is single-use."""
    try:
        verified = await authenticate(request, state, Kind.EXCHANGE)
        record, signed, app = verified.request_token, verified.signed, verified.app
        assert record is not None
        if signed.verifier is None:
            raise OAuth1Error("parameter_absent", "oauth_verifier is missing", oauth_parameters_absent="oauth_verifier")
        if record.verifier_hash is None or record.sub is None:
            raise OAuth1Error("permission_unknown", "the user has not approved this request token")
        if not hmac.compare_digest(token_hash(signed.verifier), record.verifier_hash):
            raise OAuth1Error("verifier_invalid", "the verifier does not belong to this request token")
        if active_user(state.settings, record.sub) is None:
            raise OAuth1Error("permission_denied", "the user who approved the request can no longer sign in")
        services = state.oauth1
        now = services.clock()
        token, secret = secrets.token_urlsafe(24), secrets.token_urlsafe(32)
        hashed = token_hash(token)
        access = OAuth1AccessToken(
            token_hash=hashed, token_id="oauth1-" + secrets.token_urlsafe(16), client_id=app.client_id,
            sub=record.sub, scope=record.scope, secret_enc=services.seal(secret, hashed), issued_at=now,
            expires_at=now + app.oauth1_token_ttl if app.oauth1_token_ttl else None, revoked_at=None,
        )
        if not await services.store.oauth1_exchange(record.token_hash, now, access):
            raise OAuth1Error("token_used", "the request token was already exchanged")
    except OAuth1Error as exc:
        return exc.form_response()
    log.info("oauth1 access token issued (client_id=%s, sub=%s)", app.client_id, record.sub)
    return form_response({"oauth_token": token, "oauth_token_secret": secret})


# -- /oauth1/revoke ------------------------------------------------------------------


async def revoke_endpoint(request: Request, state: OAuth1App) -> Response:
    """Revoke the access token the request is signed with; its live
    WebSocket connections close with 4003 (as RFC 7009 revocation does)."""
    try:
        verified = await authenticate(request, state, Kind.RESOURCE)
    except OAuth1Error as exc:
        return exc.form_response()
    token = verified.access_token
    assert token is not None
    services = state.oauth1
    now = services.clock()
    await services.store.oauth1_revoke_access_token(token.token_hash, now)
    claims = claims_for(token, state.settings)
    # The store is the record; the in-memory entry only has to outlive this
    # instant, so it is kept like a revoked JWT that expires now.
    closed = state.revoke_access(claims.jti, now)
    log.info("oauth1 access token revoked (client_id=%s, sub=%s, %d connections closed)",
             token.client_id, token.sub, closed)
    return form_response({})


# -- /oauth1/authorize ------------------------------------------------------------


def _error_page(status: int, title: str, message: str) -> Response:
    return pages.page_response(status, pages.error_page(title, message))


class _Flow:
    """One request token being approved in one browser.

    The login session is the OAuth 2 one (``rt_session``, same HMAC key,
    same users); signing in here sets it for ``/oauth2`` too.  The CSRF
    tokens are bound to the browser cookie, the session and the request
    token.
    """

    def __init__(self, request: Request, state: OAuth1App, services: OAuthServices,
                 services1: OAuth1Services, record: OAuth1RequestToken, app: App, token: str) -> None:
        self.request = request
        self.state = state
        self.services = services
        self.services1 = services1
        self.record = record
        self.app = app
        self.token = token
        self.now = services.clock()
        self.binding = services.read_binding(request)  # "" unless the server issued it
        self.session_cookie = read_cookie(request, SESSION_COOKIE)
        self.set_cookies: list[tuple[str, str]] = []
        self.flow = hashlib.sha256(("oauth1|" + record.token_hash).encode()).hexdigest()

    @property
    def redirect_uri(self) -> str | None:
        return None if self.record.callback == OOB else self.record.callback

    def hidden(self, purpose: str, sid: str = "") -> dict[str, str]:
        if not self.binding:
            self.binding = self.services.new_binding()
            self.set_cookies.append(set_cookie(CSRF_COOKIE, self.binding, self.request, int(CSRF_TTL), COOKIE_PATH))
        csrf = self.services.csrf_token(purpose, f"{self.binding}|{sid}", self.flow, self.now)
        return {"oauth_token": self.token, "csrf_token": csrf}

    def csrf_ok(self, token: str | None, purpose: str, sid: str = "") -> bool:
        return bool(self.binding) and self.services.check_csrf(
            token, purpose, f"{self.binding}|{sid}", self.flow, self.now)

    def page(self, status: int, html: str, *headers: tuple[str, str]) -> Response:
        return pages.page_response(status, html, self.redirect_uri, tuple(self.set_cookies) + headers)

    def login(self, status: int = 200, error: str | None = None, username: str = "",
              *headers: tuple[str, str]) -> Response:
        html = pages.login_page(app_name=self.app.name, hidden=self.hidden("oauth1-login"), username=username,
                                error=error, form_action=AUTHORIZE_PATH)
        return self.page(status, html, *headers)

    async def current_user(self) -> tuple[User, str] | None:
        session = await self.services.read_session(self.session_cookie, self.now)
        if session is None:
            return None
        user = self.services.session_user(session, self.state.settings)
        return (user, session.sid) if user is not None else None

    async def proceed(self, user: User, sid: str) -> Response:
        granted = grant_scopes(self.record.scope, self.app, user)
        remembered = await self.services.store.get_consent(user.name, self.app.client_id)
        # RFC 8252 §8.6, as for OAuth 2: a consumer whose
        # callback is a custom scheme or loopback is a native app whose
        # consumer secret proves nothing, so it is asked every time.  An oob
        # verifier is shown to the user, which is interaction enough.
        proven = self.redirect_uri is None or https_redirect(self.redirect_uri)
        if remembered is not None and granted <= remembered and proven:
            return await self.approve(user, granted)
        # oob: the user stays here and copies a code into the application.
        where = urlsplit(self.record.callback).netloc if self.redirect_uri else "this page, with a code to copy"
        html = pages.consent_page(app_name=self.app.name, user=user.display_name or user.name, scopes=granted,
                                  hidden=self.hidden("oauth1-consent", sid), redirect_host=where or self.record.callback,
                                  form_action=AUTHORIZE_PATH)
        return self.page(200, html)

    async def approve(self, user: User, granted: frozenset[str]) -> Response:
        """RFC 5849 §2.2: "the server MUST ... redirect the resource owner to
        the callback URI ... oauth_token ... oauth_verifier"."""
        verifier = secrets.token_urlsafe(16)
        bound = await self.services1.store.oauth1_authorize_request_token(
            self.record.token_hash, sub=user.name, scope=granted, verifier_hash=token_hash(verifier),
            now=self.services1.clock(),
        )
        if not bound:
            return _error_page(400, "Request expired", "This authorization request has expired or was already used.")
        if self.redirect_uri is None:
            html = pages.error_page(
                "Access granted",
                f"Enter this code in {self.app.name} to finish: {verifier}",
            )
            return self.page(200, html)
        return redirect_to(self.record.callback, {"oauth_token": self.token, "oauth_verifier": verifier}
                           ).with_headers(*self.set_cookies)

    async def deny(self) -> Response:
        await self.services1.store.oauth1_delete_request_token(self.record.token_hash)
        if self.redirect_uri is None:
            return self.page(200, pages.error_page("Access denied", f"{self.app.name} was not given access."))
        return redirect_to(self.record.callback, {"denied": self.token, "oauth_problem": "permission_denied"}
                           ).with_headers(*self.set_cookies)


async def _login(flow: _Flow, form: Mapping[str, str]) -> Response:
    if not flow.csrf_ok(form.get("csrf_token"), "oauth1-login"):
        return flow.login(403, "The form has expired. Please sign in again.")
    user = await check_password(flow.services, flow.state.settings.users, flow.request, form,
                                client_id=flow.app.client_id, protocol="oauth1")
    if isinstance(user, LoginRefused):
        return flow.login(user.status, user.message, user.username, *user.headers)
    ttl = flow.state.settings.oauth.session_ttl
    cookie = await flow.services.make_session(user, flow.now, ttl, replacing=flow.session_cookie)
    flow.set_cookies.append(flow.services.session_cookie(cookie, flow.request, int(ttl)))
    flow.set_cookies.extend(flow.services.legacy_session_cookie_removals(flow.request))
    session = await flow.services.read_session(cookie, flow.now)
    assert session is not None
    return await flow.proceed(user, session.sid)


async def _consent(flow: _Flow, form: Mapping[str, str]) -> Response:
    current = await flow.current_user()
    if current is None:
        return flow.login(200, "Please sign in again.")
    user, sid = current
    if not flow.csrf_ok(form.get("csrf_token"), "oauth1-consent", sid):
        return _error_page(403, "Request refused", "The consent form has expired or was not sent by this browser.")
    decision = form.get("decision")
    if decision == "deny":
        return await flow.deny()
    if decision != "allow":
        return _error_page(400, "Invalid request", "Unknown consent decision.")
    granted = grant_scopes(flow.record.scope, flow.app, user)
    await flow.services.store.save_consent(user.name, flow.app.client_id, granted, flow.now)
    return await flow.approve(user, granted)


async def authorize_endpoint(request: Request, state: OAuth1App) -> Response:
    """GET/POST /oauth1/authorize (RFC 5849 §2.2)."""
    try:
        multi = request.form() if request.method == "POST" else request.query
    except BadRequest:
        return _error_page(400, "Invalid request", "The form could not be read.")
    if any(len(values) > 1 for values in multi.values()):
        return _error_page(400, "Invalid request", "A parameter is repeated.")
    params = {k: v[0] for k, v in multi.items()}
    token = params.get("oauth_token", "")
    if not token or len(token) > 200:
        return _error_page(400, "Invalid request", "The oauth_token parameter is missing.")
    try:
        services1 = state.oauth1
        services = state.oauth
        record = await services1.store.oauth1_get_request_token(token_hash(token))
        # §2.2 leaves errors here to the server: never redirect for a token
        # we cannot vouch for.
        if (record is None or record.used_at is not None or record.verifier_hash is not None
                or record.expires_at <= services1.clock()):
            return _error_page(400, "Request expired", "This authorization request is unknown, expired or already used.")
        app = state.settings.apps.get(record.client_id)
        if app is None or not app.oauth1:
            return _error_page(400, "Unknown application", "The application that sent you here is not registered.")
        flow = _Flow(request, state, services, services1, record, app, token)
        action = params.get("action") if request.method == "POST" else None
        if action == "login":
            return await _login(flow, params)
        if action == "consent":
            return await _consent(flow, params)
        if action is not None:
            return _error_page(400, "Invalid request", "Unknown action.")
        current = await flow.current_user()
        if current is None:
            return flow.login()
        return await flow.proceed(*current)
    except StoreUnavailable as exc:
        log_store_unavailable(log, "oauth1 authorization endpoint", exc)
        return _error_page(503, *STORE_UNAVAILABLE_PAGE)
    except Exception:
        log.exception("oauth1 authorization endpoint failed")
        return _error_page(500, "Server error", "Something went wrong. Please try again.")
