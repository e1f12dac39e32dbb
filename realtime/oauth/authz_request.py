"""An authorization request (RFC 6749 §4.1.1, OpenID Connect Core
§3.1.2.1) validated, and the redirects back to the client.

RFC 6749 §4.1.2.1: "If the request fails due to a missing, invalid, or
mismatching redirection URI, or if the client identifier is missing or
invalid, the authorization server SHOULD inform the resource owner of the
error and MUST NOT automatically redirect the user-agent to the invalid
redirection URI."  :func:`parse_request` answers those with an error page
and raises :class:`AuthzRedirect` for every other error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit

import attrs

from realtime.config.settings import App, Settings
from realtime.http import pages
from realtime.http.responses import Response, redirect
from realtime.oauth import pkce
from realtime.oauth.common import grant_scopes, parse_scope, single
from realtime.oauth.errors import (
    InvalidRequestError,
    OAuthError,
    UnauthorizedClientError,
    UnsupportedResponseTypeError,
)

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


class AuthzRedirect(Exception):
    """An error the client should hear: a redirect to its (trusted) redirect URI."""

    def __init__(self, error: OAuthError, req_redirect: str, state: str | None) -> None:
        super().__init__(error.error)
        self.error = error
        self.redirect_uri = req_redirect
        self.state = state


def error_page(status: int, title: str, message: str) -> Response:
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


def redirect_params(settings: Settings, state: str | None, params: Mapping[str, str]) -> dict[str, str]:
    out = dict(params)
    if state is not None:
        out["state"] = state
    # RFC 9207 §2: "the authorization server MUST ... include the iss parameter"
    out["iss"] = settings.issuer
    return out


def parse_request(multi: Mapping[str, list[str]], settings: Settings) -> AuthzRequest | Response:
    """Validate an authorization request.

    Returns an error page (client or redirect URI not to be trusted) or the
    request; raises :class:`AuthzRedirect` for errors the client should hear.
    """
    for name in ("client_id", "redirect_uri"):
        if len(multi.get(name, ())) > 1:
            return error_page(400, "Invalid request", f"The {name} parameter is repeated.")
    client_id = (multi.get("client_id") or [""])[0]
    app = settings.apps.get(client_id) if client_id else None
    if app is None:
        return error_page(400, "Unknown application", "The application that sent you here is not registered.")
    given = (multi.get("redirect_uri") or [""])[0]
    if given:
        # Exact string comparison (RFC 9700 §4.1.3: "exact string matching").
        if not any(hmac.compare_digest(given.encode(), uri.encode()) for uri in app.redirect_uris):
            return error_page(400, "Invalid redirect URI", "The redirect URI is not registered for this application.")
        redirect_uri = given
    elif len(app.redirect_uris) == 1:
        redirect_uri = app.redirect_uris[0]
    else:
        return error_page(400, "Invalid redirect URI", "The request must name one of the registered redirect URIs.")

    state_values = multi.get("state") or [None]
    state = state_values[0] if len(state_values) == 1 else None
    try:
        params = single({k: v for k, v in multi.items() if k in AUTHZ_PARAMS})
    except InvalidRequestError as exc:
        raise AuthzRedirect(exc, redirect_uri, state) from None
    state = params.get("state")

    def fail(error: OAuthError) -> AuthzRedirect:
        return AuthzRedirect(error, redirect_uri, state)

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
