"""The device authorization grant (RFC 8628): the device authorization
endpoint, user codes, and the token endpoint's polling rules.

RFC 8628 §3.1: the client "makes a device authorization request to the
device authorization endpoint"; §3.2: the answer carries ``device_code``,
``user_code``, ``verification_uri``, ``verification_uri_complete``,
``expires_in`` and ``interval``.  §3.5: while the user has not acted,
the token endpoint answers ``authorization_pending``; a client polling
too fast gets ``slow_down`` and "the interval MUST be increased by 5
seconds for this and all subsequent requests"; then ``access_denied``
or ``expired_token``, or the tokens, once.

The page where the user enters the code is :mod:`realtime.oauth.device_page`.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import urlencode

from realtime.http.request import Request
from realtime.http.responses import Response, json_response
from realtime.oauth.clients import AuthenticatedClient, authenticate_client
from realtime.oauth.common import grant_scopes, parse_scope, read_form
from realtime.oauth.errors import (
    NO_STORE,
    InvalidGrantError,
    InvalidRequestError,
    OAuthError,
    ServerError,
    UnauthorizedClientError,
    json_endpoint_failure,
    retry_after_value,
)
from realtime.oauth.services import OAuthApp, OAuthServices
from realtime.config.settings import Settings
from realtime.store import token_hash
from realtime.store.devices import APPROVED, DENIED, PENDING, DeviceRecord

log = logging.getLogger("realtime.oauth.device")

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_PATH = "/device"

#: RFC 8628 §6.1: "the character set ... BCDFGHJKLMNPQRSTVWXZ (base-20)"
#: with "the format XXXX-XXXX": 20^8 ≈ 2^34.5 codes, no vowels (no
#: words), no easily confused characters.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
EXPIRES_IN = 600  # seconds a request lives (SPEC §9)
INTERVAL = 5  # seconds between polls (SPEC §9; RFC 8628 §3.2's default)


class AuthorizationPendingError(OAuthError):
    """RFC 8628 §3.5: "The authorization request is still pending as the
    end user hasn't yet completed the user-interaction steps"."""

    error = "authorization_pending"


class SlowDownError(OAuthError):
    """RFC 8628 §3.5: "the client MUST wait at least 5 seconds" more."""

    error = "slow_down"


class DeviceAccessDeniedError(OAuthError):
    """RFC 8628 §3.5 ``access_denied`` at the token endpoint: 400, as
    every RFC 6749 §5.2 error (the authorization endpoint's 403 is for a
    browser)."""

    error = "access_denied"


class TooManyDeviceRequestsError(OAuthError):
    """Too many device authorization requests from one address: each one
    stores a row for ten minutes.  429 with ``Retry-After`` (RFC 6585 §4);
    ``slow_down`` is the RFC 8628 code a device already knows to back off on."""

    error = "slow_down"
    status_code = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many device authorization requests, retry later")
        self.retry_after = retry_after

    def headers(self) -> tuple[tuple[str, str], ...]:
        return NO_STORE + (("retry-after", retry_after_value(self.retry_after)),)


class ExpiredTokenError(OAuthError):
    """RFC 8628 §3.5: "The "device_code" has expired"."""

    error = "expired_token"


# -- user codes -----------------------------------------------------------------


def new_user_code() -> str:
    """Eight letters of :data:`USER_CODE_ALPHABET`, drawn by ``secrets``."""
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def normalize_user_code(text: str) -> str | None:
    """RFC 8628 §6.1: "the authorization server should be case-insensitive
    when comparing ... and should strip dashes and other punctuation";
    None when what is left cannot be a user code."""
    letters = "".join(ch for ch in text.upper() if ch not in "- \t")
    if len(letters) != USER_CODE_LENGTH or any(ch not in USER_CODE_ALPHABET for ch in letters):
        return None
    return letters


def display_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def user_code_hash(code: str) -> str:
    """The stored form of a normalised user code."""
    return token_hash("user-code:" + code)


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def verification_uri(settings: Settings) -> str:
    return settings.issuer + DEVICE_PATH


# -- the device authorization endpoint ----------------------------------------------


async def device_authorization_endpoint(request: Request, state: OAuthApp) -> Response:
    """POST /oauth2/device_authorization (RFC 8628 §3.1-3.2)."""
    services = state.oauth
    settings = state.settings
    now = services.clock()
    try:
        form = read_form(request)
        # Client authentication as at the token endpoint, with its throttles
        # before any argon2 work (issue 18 M2).
        client = await authenticate_client(request, form, settings, services, now)
        if DEVICE_GRANT not in client.app.grant_types:
            raise UnauthorizedClientError("the client may not use the device authorization grant")
        scope = grant_scopes(parse_scope(form.get("scope")), client.app, None)
        address = request.client_host or "-"
        wait = services.device_request_throttle.retry_after(address, now)
        if wait > 0:
            raise TooManyDeviceRequestsError(wait)
        services.device_request_throttle.spend(address, now)
        body = await _new_request(services, settings, client, scope, now)
    except Exception as exc:
        return json_endpoint_failure(log, "device authorization endpoint", exc)
    return json_response(200, body, NO_STORE)


async def _new_request(services: OAuthServices, settings: Settings, client: AuthenticatedClient,
                       scope: frozenset[str], now: float) -> dict:
    device_code = secrets.token_urlsafe(32)
    for _ in range(5):  # a clash with a live user code is rare (2^34.5 codes): draw again
        user_code = new_user_code()
        stored = await services.store.save_device_code(
            token_hash(device_code), user_code_hash(user_code), client_id=client.client_id, scope=scope,
            now=now, expires_at=now + EXPIRES_IN, interval=float(INTERVAL),
        )
        if stored:
            break
    else:
        raise ServerError("could not draw a free user code")
    uri = verification_uri(settings)
    shown = display_user_code(user_code)
    return {
        "device_code": device_code,
        "user_code": shown,
        "verification_uri": uri,
        "verification_uri_complete": f"{uri}?{urlencode({'user_code': shown})}",
        "expires_in": EXPIRES_IN,
        "interval": INTERVAL,
    }


# -- the token endpoint's side --------------------------------------------------------


async def approved_device_code(services: OAuthServices, device_code: str | None,
                               client: AuthenticatedClient, now: float) -> DeviceRecord:
    """One poll of the token endpoint: the approved request, or the error
    to answer (pending, slow_down, denied, expired, invalid)."""
    if not device_code:
        raise InvalidRequestError("device_code is missing")
    poll = await services.store.poll_device_code(token_hash(device_code), now)
    if poll is None or not hmac.compare_digest(poll.record.client_id.encode(), client.client_id.encode()):
        raise InvalidGrantError("the device code is invalid")
    record = poll.record
    if record.status not in (PENDING, APPROVED, DENIED):
        raise InvalidGrantError("the device code was already used")
    if record.expires_at <= now:
        raise ExpiredTokenError("the device code has expired")
    if record.status == DENIED:
        raise DeviceAccessDeniedError("the user denied the request")
    if record.status == PENDING:
        if poll.too_fast:
            raise SlowDownError(f"poll at most every {int(record.interval)} seconds")
        raise AuthorizationPendingError("the user has not acted yet")
    assert record.status == APPROVED and record.sub is not None
    return record
