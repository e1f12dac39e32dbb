"""External login providers: the frozen definition and its pure rules.

An operator describes each provider in a JSON file (``[oauth] providers``,
read by :mod:`realtime.config.providers`); the login page offers "Log in
with X", and :mod:`realtime.oauth.providers.flow` runs the authorization
code flow against it as a client.  This module does no I/O: it builds the
URLs and requests, and reads the provider's answers.  It sits in
``config`` because the loader builds the definitions and the settings
snapshot holds them; the OAuth flow imports it from here.

Local users from a provider are named ``NAME:<ProfileIdVariable value>``
(SPEC §2); ':' is otherwise refused in user names, so a password user can
never take a provider user's ``sub``.
"""

from __future__ import annotations

import base64
import json
import re
import string
import urllib.parse
from typing import Any, Mapping
from urllib.parse import quote

import attrs

#: RFC 7591 §2 names for the client authentication at the token endpoint.
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MAX_ID = 200


class ProviderError(Exception):
    """The provider's answer cannot be used; ``str()`` is safe to log (no secrets)."""


@attrs.frozen
class Provider:
    """One provider definition file, validated.

    ``client_secret`` is read from the environment variable or the file
    the definition names, never from the definition itself; ``repr=False``
    keeps it out of logs and tracebacks.
    """

    name: str  # the NAME in /oauth2/callback/NAME and in subs NAME:ID
    display_name: str
    base_url: str  # scheme://host[:port][/prefix], no trailing slash
    resource_url: str
    authorize_path: str
    token_path: str
    profile_path: str  # getProfileInfo
    profile_id: str  # ProfileIdVariable, dotted for nested objects ("data.id")
    client_id: str
    client_secret: str | None = attrs.field(default=None, repr=False)
    scope: str = ""  # oauth2_scope, sent as is
    bearer: str = "{AccessToken}"  # oauth2_bearer
    token_expires: str | None = None  # TokenExpiresVariable (read, not needed: the token is used once)
    display_template: str | None = None  # TemplateDisplayName
    refresh_url: str | None = None  # accessFromRefreshTokenUrl (provider tokens are not kept)
    default_scopes: tuple[str, ...] = ()
    auto_create: bool = False
    token_auth: str = "client_secret_basic"
    pkce: bool = True
    timeout: float = 10.0
    source: str = ""  # the definition file, for messages

    # -- URLs -------------------------------------------------------------

    @property
    def authorize_url(self) -> str:
        return self.base_url + self.authorize_path

    @property
    def token_url(self) -> str:
        return self.base_url + self.token_path

    @property
    def profile_url(self) -> str:
        if self.profile_path.startswith(("https://", "http://")):
            return self.profile_path
        return self.resource_url + self.profile_path

    @property
    def origin(self) -> str:
        """Where the browser is sent (CSP ``form-action`` must allow it)."""
        parts = urllib.parse.urlsplit(self.authorize_url)
        return f"{parts.scheme}://{parts.netloc}"

    def authorization_request(self, *, redirect_uri: str, state: str, challenge: str | None) -> str:
        """RFC 6749 §4.1.1 (and RFC 7636 §4.3 when ``pkce``): the URL the browser goes to."""
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri,
                  "state": state}
        if self.scope:
            params["scope"] = self.scope
        if challenge is not None:
            params["code_challenge"] = challenge
            params["code_challenge_method"] = "S256"
        url = self.authorize_url
        sep = "&" if urllib.parse.urlsplit(url).query else "?"
        return url + sep + urllib.parse.urlencode(params)

    def token_request(self, *, code: str, redirect_uri: str, verifier: str | None
                      ) -> tuple[dict[str, str], dict[str, str]]:
        """RFC 6749 §4.1.3: the (form, headers) of the code exchange.

        §2.3.1: with ``client_secret_basic`` the id and secret are
        form-urlencoded, then joined by ':' and base64-encoded.
        """
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if verifier is not None:
            form["code_verifier"] = verifier
        headers = {"accept": "application/json"}
        if self.token_auth == "client_secret_basic" and self.client_secret is not None:
            raw = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
            headers["authorization"] = "Basic " + base64.b64encode(raw.encode()).decode("ascii")
        else:
            form["client_id"] = self.client_id
            if self.token_auth == "client_secret_post" and self.client_secret is not None:
                form["client_secret"] = self.client_secret
        return form, headers

    def authorization_header(self, access_token: str) -> str:
        """``oauth2_bearer`` with ``{AccessToken}`` filled in.

        A template with a space is the whole header value (``"token
        {AccessToken}"``); a bare one gets the RFC 6750 ``Bearer`` scheme.
        """
        value = self.bearer.replace("{AccessToken}", access_token)
        return value if " " in value.strip() else f"Bearer {value.strip()}"

    # -- answers ----------------------------------------------------------

    def read_profile_id(self, profile: Mapping[str, Any]) -> str:
        """The ``ProfileIdVariable`` value as text; ProviderError if unusable."""
        value: Any = lookup(profile, self.profile_id)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ProviderError(f"the profile has no usable {self.profile_id!r}")
        text = str(value)
        if not text or len(text) > MAX_ID or text != text.strip() or not text.isprintable():
            raise ProviderError(f"the profile's {self.profile_id!r} is not a usable identifier")
        return text

    def sub_for(self, profile_id: str) -> str:
        return f"{self.name}:{profile_id}"

    def read_display_name(self, profile: Mapping[str, Any]) -> str | None:
        """``TemplateDisplayName`` with ``{field}`` (or ``{a.b}``) from the profile."""
        if not self.display_template:
            return None
        out = []
        for literal, field, _spec, _conv in string.Formatter().parse(self.display_template):
            out.append(literal)
            if field is None:
                continue
            value = lookup(profile, field)
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                return None
            out.append(str(value))
        text = " ".join("".join(out).split())
        return text[:200] if text and text.isprintable() else None


def lookup(obj: Any, dotted: str) -> Any:
    """``a.b`` in nested objects; None when absent."""
    for part in dotted.split("."):
        if not isinstance(obj, Mapping) or part not in obj:
            return None
        obj = obj[part]
    return obj


def allowed_url(url: str) -> bool:
    """Outbound requests go over https, or plain http to loopback (tests, local dev)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in LOOPBACK


def parse_token_response(status: int, content_type: str, body: bytes) -> tuple[str, dict[str, Any]]:
    """RFC 6749 §5.1/§5.2: the access token from a token response.

    Some providers answer ``application/x-www-form-urlencoded`` even when
    asked for JSON; both are read.  Raises ProviderError with the §5.2
    ``error`` code (never the body) when there is no usable token.
    """
    data: Any
    if content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded":
        data = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
    else:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            data = None
    if not isinstance(data, dict):
        raise ProviderError(f"token endpoint answered {status} without a JSON object")
    if status != 200 or "error" in data:
        raise ProviderError(f"token endpoint answered {status} error={safe_code(data.get('error'))}")
    token = data.get("access_token")
    if not isinstance(token, str) or not token or len(token) > 16384:
        raise ProviderError("token response has no access_token")
    token_type = data.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ProviderError(f"token_type {safe_code(token_type)} is not Bearer")
    return token, data


def safe_code(value: Any) -> str:
    """An error code from the other side, fit for a log line and a page."""
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", value):
        return value
    return "-" if value is None else "(unprintable)"
