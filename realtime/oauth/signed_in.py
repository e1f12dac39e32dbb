"""What the pages outside the authorization endpoint (``/device``,
``/account``) share: the signed-in user of a request, the login form,
signing in, and CSRF tokens.

The login session and its cookie are the authorization endpoint's: the
same :meth:`OAuthServices.signed_in` reads the user,
:meth:`~OAuthServices.make_session` starts a session (ending the old one),
:func:`realtime.oauth.login.check_password` checks the password (with
the brute-force throttles) and :func:`realtime.http.pages.login_page` draws
the form.  So signing in here signs in for ``/oauth2/authorize`` too.

The cookies are set for ``Path=/`` (``__Host-`` on HTTPS already is):
these pages live outside ``/oauth2``.
"""

from __future__ import annotations

import logging
from typing import Mapping

from realtime.config.settings import Settings, User
from realtime.http import pages
from realtime.http.request import BadRequest, Request
from realtime.http.responses import Response
from realtime.oauth.common import single
from realtime.oauth.errors import STORE_UNAVAILABLE_PAGE, InvalidRequestError, log_store_unavailable
from realtime.oauth.login import LoginRefused, check_password
from realtime.oauth.services import (
    CSRF_COOKIE, CSRF_TTL, SESSION_COOKIE, OAuthApp, OAuthServices, Session, read_cookie, set_cookie,
)
from realtime.store import StoreUnavailable

LOGIN = "login"


class BrowserPage:
    """One request to a signed-in page, with the cookies it will set."""

    def __init__(self, request: Request, state: OAuthApp, path: str, label: str) -> None:
        self.request = request
        self.state = state
        self.services: OAuthServices = state.oauth
        self.settings: Settings = state.settings
        self.path = path  # the page's own path: its forms post here, its CSRF tokens are bound to it
        self.label = label  # "Sign in to continue to <label>"
        self.now = self.services.clock()
        self.set_cookies: list[tuple[str, str]] = []
        self.binding = self.services.read_binding(request)  # "" unless the server issued it

    def form(self) -> dict[str, str] | None:
        """The POSTed form, one value per field; None when it cannot be read."""
        try:
            return single(self.request.form(max_fields=50))
        except (BadRequest, InvalidRequestError):
            return None

    async def current(self) -> tuple[User, Session] | None:
        """The signed-in user, as the authorization endpoint reads it."""
        return await self.services.signed_in(self.request, self.settings, self.now)

    # -- CSRF -----------------------------------------------------------------

    def _binding(self) -> str:
        if not self.binding:
            self.binding = self.services.new_binding()
            self.set_cookies.append(set_cookie(CSRF_COOKIE, self.binding, self.request, int(CSRF_TTL), path="/"))
        return self.binding

    def csrf(self, purpose: str, sid: str = "", flow: str = "", target: str | None = None) -> str:
        """A token for one form, bound to this browser, the session, the
        page it posts to (``target``, else this one) and (``flow``) what
        the form acts on."""
        return self.services.csrf_token(purpose, f"{self._binding()}|{sid}", f"{target or self.path}|{flow}",
                                        self.now)

    def csrf_ok(self, token: str | None, purpose: str, sid: str = "", flow: str = "") -> bool:
        if not self.binding:
            return False
        return self.services.check_csrf(token, purpose, f"{self.binding}|{sid}", f"{self.path}|{flow}", self.now)

    # -- answers --------------------------------------------------------------

    def page(self, status: int, html: str, *headers: tuple[str, str]) -> Response:
        return pages.page_response(status, html, None, tuple(self.set_cookies) + tuple(headers))

    def error(self, status: int, title: str, message: str) -> Response:
        return self.page(status, pages.error_page(title, message))

    def failure(self, log: logging.Logger, what: str, exc: Exception) -> Response:
        """The page's answer to the exception that ended its request (call it
        from the ``except`` block): the store's 503 page, else a 500 with no
        detail and the traceback logged."""
        if isinstance(exc, StoreUnavailable):
            log_store_unavailable(log, what, exc)
            return self.error(503, *STORE_UNAVAILABLE_PAGE)
        log.exception("%s failed", what)
        return self.error(500, "Server error", "Something went wrong. Please try again.")

    def login_form(self, *, status: int = 200, error: str | None = None, username: str = "",
                   keep: Mapping[str, str] | None = None, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        """The sign-in form, posting back to this page with ``keep``'s fields."""
        hidden = dict(keep or {})
        hidden["csrf_token"] = self.csrf(LOGIN)
        html = pages.login_page(app_name=self.label, hidden=hidden, username=username, error=error,
                                form_action=self.path)
        return self.page(status, html, *headers)

    async def sign_in(self, form: Mapping[str, str], keep: Mapping[str, str]) -> tuple[User, Session] | Response:
        """``action=login``: a new session for the user, or the form again."""
        if not self.csrf_ok(form.get("csrf_token"), LOGIN):
            return self.login_form(status=403, error="The form has expired. Please sign in again.", keep=keep)
        user = await check_password(self.services, self.settings.users, self.request, form,
                                    client_id=self.path, protocol="account")
        if isinstance(user, LoginRefused):
            return self.login_form(status=user.status, error=user.message, username=user.username, keep=keep,
                                   headers=user.headers)
        # A new session id (no fixation); the browser's old session ends with it.
        ttl = self.settings.oauth.session_ttl
        cookie = await self.services.make_session(user, self.now, ttl,
                                                  replacing=read_cookie(self.request, SESSION_COOKIE))
        self.set_cookies.append(self.services.session_cookie(cookie, self.request, int(ttl)))
        self.set_cookies.extend(self.services.legacy_session_cookie_removals(self.request))
        session = await self.services.read_session(cookie, self.now)
        assert session is not None
        return user, session
