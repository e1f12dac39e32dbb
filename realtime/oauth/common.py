"""Small rules shared by the OAuth endpoints: parameters, scopes, TTLs."""

from __future__ import annotations

import re
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from realtime.http.request import BadRequest, Request
from realtime.oauth.errors import InvalidRequestError, InvalidScopeError
from realtime.config.settings import App, Settings, User

#: Asked for by public clients that want a refresh token; not an app scope.
OFFLINE_ACCESS = "offline_access"
OPENID = "openid"

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
MAX_PARAM = 4096


def single(params: Mapping[str, list[str]]) -> dict[str, str]:
    """One value per parameter.

    RFC 6749 §3.1 and §3.2: "Request and response parameters MUST NOT be
    included more than once."  A parameter sent without a value is treated
    as omitted (§3.1: "Parameters sent without a value MUST be treated as
    if they were omitted from the request").
    """
    out: dict[str, str] = {}
    for name, values in params.items():
        if len(values) > 1:
            raise InvalidRequestError(f"parameter {name} is repeated" if _printable(name) else "a parameter is repeated")
        if values and values[0] != "":
            if len(values[0]) > MAX_PARAM:
                raise InvalidRequestError("a parameter is too long")
            out[name] = values[0]
    return out


def _printable(name: str) -> bool:
    return len(name) <= 40 and re.fullmatch(r"[A-Za-z0-9_\-.]+", name) is not None


def read_form(request: Request) -> dict[str, str]:
    """The body of a back-channel POST as single-valued parameters.

    RFC 6749 §4.1.3: the client makes the request "using the
    "application/x-www-form-urlencoded" format ... with a character
    encoding of UTF-8 in the HTTP request entity-body."
    """
    try:
        return single(request.form(max_fields=100))
    except BadRequest as exc:
        raise InvalidRequestError(str(exc)) from None


def parse_scope(text: str | None) -> frozenset[str] | None:
    """A space-delimited scope string; None when the parameter was absent."""
    if text is None:
        return None
    tokens = text.split(" ")
    scopes = frozenset(t for t in tokens if t)
    if any(_SCOPE_TOKEN.fullmatch(t) is None for t in scopes):
        raise InvalidScopeError("malformed scope")
    return scopes


def scope_string(scopes: Iterable[str]) -> str:
    return " ".join(sorted(set(scopes)))


def grant_scopes(requested: frozenset[str] | None, app: App, user: User | None) -> frozenset[str]:
    """Scopes granted = requested ∩ app's ∩ (for user grants) user's.

    RFC 6749 §3.3: "If the client omits the scope parameter when requesting
    authorization, the authorization server MUST either process the request
    using a pre-defined default value or fail the request indicating an
    invalid scope."  Our default is every scope of the app.

    A scope the app may never have is ``invalid_scope``; a scope the user
    lacks is dropped (the response's ``scope`` then says what was issued,
    RFC 6749 §5.1).  ``offline_access`` only asks for a refresh token and
    passes through.
    """
    allowed = frozenset(app.scopes)
    if requested is None:
        requested = allowed
    extra = requested - allowed - {OFFLINE_ACCESS}
    if extra:
        raise InvalidScopeError("the client may not request one of these scopes")
    granted = requested & allowed
    if user is not None:
        # ``openid`` (OIDC) asks for an id_token, no permission of the user's:
        # the app's list alone decides it, as for offline_access.
        granted &= frozenset(user.scopes) | {OPENID}
    if OFFLINE_ACCESS in requested:
        granted |= {OFFLINE_ACCESS}
    return granted


def active_user(settings: Settings, sub: str) -> User | None:
    """The user ``sub`` from the current snapshot, if present and enabled."""
    user = settings.users.get(sub)
    if user is None or user.disabled:
        return None
    return user


def access_ttl(settings: Settings, app: App) -> float:
    return app.access_token_ttl or settings.oauth.access_token_ttl


def refresh_ttl(settings: Settings, app: App) -> float:
    return app.refresh_token_ttl or settings.oauth.refresh_token_ttl


def wants_refresh(app: App, scopes: frozenset[str]) -> bool:
    """A refresh token goes to confidential clients, or to public ones that
    asked for ``offline_access``; in both cases only if the app may use the
    ``refresh_token`` grant."""
    if "refresh_token" not in app.grant_types:
        return False
    return not app.public or OFFLINE_ACCESS in scopes


def https_redirect(uri: str) -> bool:
    """Is ``uri`` an https URL, the only kind of redirect whose owner the
    server can trust to be who registered it?"""
    return urlsplit(uri).scheme.lower() == "https"


def consent_may_be_remembered(app: App, redirect_uri: str) -> bool:
    """May a stored consent issue a code without showing a page?

    RFC 8252 §8.6: "If the authorization server is unable to verify the
    identity of the client (e.g., the client is a native app using a custom
    URI scheme or a loopback redirect), it SHOULD NOT process the request
    automatically ... as if no previous request had been approved."  So a
    public client with a custom-scheme or loopback redirect always gets the
    consent page; a confidential one, or an https redirect,
    may skip it.
    """
    return not app.public or https_redirect(redirect_uri)
