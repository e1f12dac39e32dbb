"""Signing in on a device without a browser: the device authorization
grant (RFC 8628) from the client's side.

:func:`request_device_code` asks the server for a code; the caller shows
``user_code`` and ``verification_uri`` to the person;
:func:`poll_for_tokens` polls the token endpoint every ``interval``
seconds (5 more after each ``slow_down``, RFC 8628 §3.5) until the
person allows (the token response), denies or lets the code expire
(:class:`~realtime.client.errors.AuthError`).  :class:`DeviceLogin` is a
:class:`~realtime.client.token_providers.TokenProvider` that does all of
it on first use, then renews with the refresh token it got, if any.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import attrs
import trio

from realtime.client.errors import AuthError, TransportError
from realtime.client.http_client import HttpResponse, http_request, oauth_error
from realtime.client.token_providers import RefreshToken, TokenProvider

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_STEP = 5.0


@attrs.frozen
class DeviceCode:
    """The server's answer to a device authorization request (RFC 8628 §3.2)."""

    device_code: str = attrs.field(repr=False)  # the poller's secret
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


@attrs.frozen
class Endpoint:
    """Where and as whom the device talks to the server."""

    base_url: str
    client_id: str
    client_secret: str | None = attrs.field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = None
    device_path: str = "/oauth2/device_authorization"
    token_path: str = "/oauth2/token"

    async def post(self, path: str, fields: dict[str, str]) -> HttpResponse:
        headers = [("content-type", "application/x-www-form-urlencoded"), ("accept", "application/json")]
        if self.client_secret is not None:
            pair = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
            headers.append(("authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
        else:
            fields = {**fields, "client_id": self.client_id}
        return await http_request("POST", self.base_url.rstrip("/") + path, headers=headers,
                                  body=urlencode(fields).encode(), ssl_context=self.ssl_context)


async def request_device_code(endpoint: Endpoint, scope: str | None = None) -> DeviceCode:
    fields = {"scope": scope} if scope else {}
    resp = await endpoint.post(endpoint.device_path, fields)
    if resp.status >= 500 or resp.status == 429:
        raise TransportError(f"device authorization endpoint: {oauth_error(resp)}")
    if resp.status != 200:
        raise AuthError(f"device authorization refused: {oauth_error(resp)}")
    body = resp.json()
    try:
        return DeviceCode(
            device_code=str(body["device_code"]), user_code=str(body["user_code"]),
            verification_uri=str(body["verification_uri"]),
            verification_uri_complete=body.get("verification_uri_complete"),
            expires_in=float(body["expires_in"]), interval=float(body.get("interval") or 5),
        )
    except (KeyError, TypeError, ValueError):
        raise AuthError("the device authorization endpoint sent an incomplete answer") from None


async def poll_for_tokens(endpoint: Endpoint, code: DeviceCode, *,
                          sleep: Callable[[float], Awaitable[Any]] = trio.sleep) -> dict[str, Any]:
    """Poll until the person acts; the token response (RFC 6749 §5.1).

    ``sleep`` waits between polls (tests pass one that moves a clock).
    Transient failures (a 5xx, a network error) are retried at the same
    pace until the code expires.
    """
    interval = code.interval
    waited = 0.0
    while True:
        await sleep(interval)
        waited += interval
        try:
            resp = await endpoint.post(endpoint.token_path, {"grant_type": DEVICE_GRANT,
                                                             "device_code": code.device_code})
        except TransportError:
            if waited >= code.expires_in:
                raise
            continue
        if resp.status == 200:
            body = resp.json()
            if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
                raise AuthError("the token endpoint sent no access_token")
            return body
        body = resp.json()
        error = body.get("error") if isinstance(body, dict) else None
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_STEP
            continue
        if error == "access_denied":
            raise AuthError("the sign-in was denied")
        if error == "expired_token":
            raise AuthError("the code expired before anyone signed in; run the command again")
        if resp.status >= 500 and waited < code.expires_in:
            continue
        raise AuthError(f"token endpoint refused: {oauth_error(resp)}")


class DeviceLogin(TokenProvider):
    """Tokens from a device sign-in: the first :meth:`token` asks for a
    code, hands it to ``show(code)`` (print it, or show a QR code) and
    waits for the person; later ones renew with the refresh token, if the
    server gave one (ask for ``offline_access`` as a public app)."""

    def __init__(self, endpoint: Endpoint, show: Callable[[DeviceCode], Any], *, scope: str | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = trio.sleep) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.show = show
        self.requested_scope = scope
        self.sleep = sleep
        self.refresher: RefreshToken | None = None
        self.signed_in = False

    def __repr__(self) -> str:
        return f"DeviceLogin({self.endpoint.base_url!r}, client_id={self.endpoint.client_id!r})"

    async def _renew(self) -> str:
        if self.refresher is not None:
            token = await self.refresher.refresh()
            self.expires_at, self.scope = self.refresher.expires_at, self.refresher.scope
            self.access_token = token
            return token
        if self.signed_in:
            raise AuthError("the access token expired and the server gave no refresh token; sign in again")
        code = await request_device_code(self.endpoint, self.requested_scope)
        result = self.show(code)
        if isinstance(result, Awaitable):
            await result
        body = await poll_for_tokens(self.endpoint, code, sleep=self.sleep)
        self.signed_in = True
        token = self._take(body)
        refresh = body.get("refresh_token")
        if isinstance(refresh, str):
            e = self.endpoint
            self.refresher = RefreshToken(e.base_url, e.client_id, refresh, client_secret=e.client_secret,
                                          ssl_context=e.ssl_context, token_path=e.token_path)
        return token
