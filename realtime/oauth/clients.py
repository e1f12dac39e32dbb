"""Client authentication at the token, revocation and introspection endpoints.

RFC 6749 §2.3.1: "The client identifier is encoded using the
"application/x-www-form-urlencoded" encoding algorithm per Appendix B, and
the encoded value is used as the username; the client password is encoded
using the same algorithm and used as the password."  So ``Basic`` carries
form-encoded id and secret, which :func:`parse_basic` decodes.

RFC 6749 §2.3: "The client MUST NOT use more than one authentication
method in each request." — both Basic and ``client_secret`` in the body is
``invalid_request``.

Methods: ``client_secret_basic``, ``client_secret_post`` for confidential
apps; ``none`` (only ``client_id``) for public ones.  A rotated-out secret
(``retired_secrets``) keeps working until its ``expires_at``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from typing import TYPE_CHECKING, Mapping
from urllib.parse import unquote_plus

import attrs

from realtime.oauth.errors import (
    ClientThrottledError,
    InvalidClientError,
    InvalidRequestError,
    TemporarilyUnavailableError,
)
from realtime.oauth.offload import OffloadBusy
from realtime.config.settings import App

if TYPE_CHECKING:
    from realtime.http.request import Request
    from realtime.oauth.services import OAuthServices
    from realtime.config.settings import Settings

log = logging.getLogger("realtime.oauth")

METHODS = ("client_secret_basic", "client_secret_post", "none")
MAX_CREDENTIAL = 512


@attrs.frozen
class AuthenticatedClient:
    app: App
    method: str  # one of METHODS

    @property
    def client_id(self) -> str:
        return self.app.client_id

    @property
    def public(self) -> bool:
        return self.method == "none"


def parse_basic(value: str) -> tuple[str, str]:
    """``Basic base64(urlencode(id):urlencode(secret))`` -> (id, secret).

    Raises InvalidClientError (with the Basic challenge) when malformed.
    """
    scheme, _, blob = value.strip().partition(" ")
    if scheme.lower() != "basic" or not blob.strip():
        raise InvalidClientError("malformed Basic credentials", used_basic=True)
    try:
        raw = base64.b64decode(blob.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidClientError("malformed Basic credentials", used_basic=True) from None
    user, sep, password = raw.partition(":")
    if not sep:
        raise InvalidClientError("malformed Basic credentials", used_basic=True)
    return unquote_plus(user), unquote_plus(password)


def valid_hashes(app: App, now: float) -> list[str]:
    """The app's current secret hash, then the retired ones still in grace."""
    hashes = [app.client_secret_hash] if app.client_secret_hash else []
    hashes += [r.hash for r in app.retired_secrets if r.expires_at > now and r.hash]
    return hashes


async def authenticate_client(
    request: "Request",
    form: Mapping[str, str],
    settings: "Settings",
    services: "OAuthServices",
    now: float,
) -> AuthenticatedClient:
    """Identify and authenticate the client of a back-channel request.

    Raises InvalidRequestError for several methods at once and
    InvalidClientError for anything that does not authenticate.
    """
    authz = request.header_values("authorization")
    if len(authz) > 1:
        raise InvalidRequestError("more than one Authorization header")
    form_id = form.get("client_id")
    form_secret = form.get("client_secret")
    used_basic = False
    if authz:
        if not authz[0].strip().lower().startswith("basic "):
            raise InvalidClientError("unsupported client authentication scheme")
        used_basic = True
        client_id, secret = parse_basic(authz[0])
        if form_secret is not None:
            raise InvalidRequestError("use one client authentication method, not two")
        if form_id is not None and not hmac.compare_digest(form_id.encode(), client_id.encode()):
            raise InvalidRequestError("client_id differs from the Authorization header")
        method = "client_secret_basic"
    elif form_secret is not None:
        if not form_id:
            raise InvalidClientError("client_id is missing")
        client_id, secret, method = form_id, form_secret, "client_secret_post"
    elif form_id:
        client_id, secret, method = form_id, None, "none"
    else:
        raise InvalidClientError("client authentication is required")

    if len(client_id) > MAX_CREDENTIAL or (secret is not None and len(secret) > MAX_CREDENTIAL):
        raise InvalidClientError("client authentication failed", used_basic=used_basic)

    app = settings.apps.get(client_id)
    if method == "none":
        if app is None or not app.public:
            raise InvalidClientError("client authentication failed")
        return AuthenticatedClient(app, method)

    assert secret is not None
    hashes = valid_hashes(app, now) if app is not None and not app.public else []
    if app is None or not hashes:
        # RFC 6749 §2.2: the client identifier "is not a secret", so an
        # unknown one (or one with no secret) is refused at once, with no
        # dummy hash to spend argon2 on.
        raise InvalidClientError("client authentication failed", used_basic=used_basic)
    if services.secret_cache.lookup(client_id, secret, hashes):
        return AuthenticatedClient(app, method)
    matched = await _verify_secret(request, services, client_id, secret, hashes)
    if matched is None:
        raise InvalidClientError("client authentication failed", used_basic=used_basic)
    services.secret_cache.remember(client_id, secret, matched)
    return AuthenticatedClient(app, method)


async def _verify_secret(request: "Request", services: "OAuthServices", client_id: str, secret: str,
                         hashes: list[str]) -> str | None:
    """The argon2 check of a client secret, throttled before the hash per
    (``client_id``, address), per address and, more loosely, per
    ``client_id`` (reserved first, refunded on success, as for logins) and refused with 503 when the clients' argon2 queue is full."""
    throttle = services.client_throttle
    address = request.client_host or "-"
    wait = throttle.reserve(client_id, address, services.clock())
    if wait > 0:
        raise ClientThrottledError(wait)
    try:
        matched = await services.secret_hasher.verify_any(hashes, secret)
    except OffloadBusy as exc:
        throttle.refund(client_id, address, services.clock())
        raise TemporarilyUnavailableError(exc.retry_after) from None
    if matched is None:
        log.info("failed client authentication (client_id=%s, address=%s)", client_id, address)
    else:
        throttle.refund(client_id, address, services.clock())
    return matched
