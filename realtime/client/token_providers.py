"""Token providers: where the client's access tokens come from.

:class:`ClientCredentials` (a confidential app's id and secret),
:class:`RefreshToken` (a user's refresh token, rotated on every use) and
:class:`StaticToken` (a token obtained elsewhere).
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import trio

from realtime.client.errors import AuthError, TransportError
from realtime.client.http_client import oauth_error, http_request


class TokenProvider:
    """Hands out access tokens; subclasses say how to get a new one.

    ``token()`` returns the current token while it has more than
    ``min_left`` seconds to live, otherwise a new one; ``refresh()``
    always gets a new one.  Only one request runs at a time.
    """

    min_left = 5.0

    def __init__(self) -> None:
        self.access_token: str | None = None
        self.expires_at = 0.0
        self.scope: str | None = None
        self._lock = trio.Lock()

    async def token(self) -> str:
        async with self._lock:
            if self.access_token is not None and self.expires_at - time.time() > self.min_left:
                return self.access_token
            return await self._renew()

    async def refresh(self) -> str:
        async with self._lock:
            return await self._renew()

    async def _renew(self) -> str:
        raise NotImplementedError

    def _take(self, body: Any) -> str:
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise AuthError("the token endpoint sent no access_token")
        self.access_token = body["access_token"]
        self.expires_at = time.time() + float(body.get("expires_in") or 0)
        self.scope = body.get("scope")
        return self.access_token


class _TokenEndpoint(TokenProvider):
    def __init__(self, base_url: str, client_id: str, client_secret: str | None,
                 ssl_context: ssl.SSLContext | None, token_path: str) -> None:
        super().__init__()
        self.token_url = base_url.rstrip("/") + token_path
        self.client_id = client_id
        self._secret = client_secret
        self.ssl_context = ssl_context

    def __repr__(self) -> str:  # never the secret
        return f"{type(self).__name__}({self.token_url!r}, client_id={self.client_id!r})"

    async def _post(self, fields: dict[str, str]) -> Any:
        headers = [("content-type", "application/x-www-form-urlencoded"), ("accept", "application/json")]
        if self._secret is not None:
            # RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
            headers.append(("authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
        else:
            fields = {**fields, "client_id": self.client_id}
        resp = await http_request("POST", self.token_url, headers=headers,
                                  body=urlencode(fields).encode(), ssl_context=self.ssl_context)
        if resp.status == 200:
            return resp.json()
        if resp.status >= 500 or resp.status == 429:
            raise TransportError(f"token endpoint: {oauth_error(resp)}")
        raise AuthError(f"token endpoint refused: {oauth_error(resp)}")


class ClientCredentials(_TokenEndpoint):
    """RFC 6749 §4.4: a confidential app's own token (``sub`` = client id)."""

    def __init__(self, base_url: str, client_id: str, client_secret: str, *, scope: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, token_path: str = "/oauth2/token") -> None:
        super().__init__(base_url, client_id, client_secret, ssl_context, token_path)
        self.requested_scope = scope

    async def _renew(self) -> str:
        fields = {"grant_type": "client_credentials"}
        if self.requested_scope:
            fields["scope"] = self.requested_scope
        return self._take(await self._post(fields))


class RefreshToken(_TokenEndpoint):
    """RFC 6749 §6: a user's refresh token, rotated on every use.

    ``on_rotate(new_refresh_token)`` is called with each new refresh token
    (sync or async) so the caller can store it: the old one is spent, and
    presenting it again revokes the whole family.
    """

    def __init__(self, base_url: str, client_id: str, refresh_token: str, *, client_secret: str | None = None,
                 on_rotate: Callable[[str], Any] | None = None, ssl_context: ssl.SSLContext | None = None,
                 token_path: str = "/oauth2/token") -> None:
        super().__init__(base_url, client_id, client_secret, ssl_context, token_path)
        self._refresh_token = refresh_token
        self.on_rotate = on_rotate

    async def _renew(self) -> str:
        body = await self._post({"grant_type": "refresh_token", "refresh_token": self._refresh_token})
        token = self._take(body)
        new = body.get("refresh_token")
        if isinstance(new, str) and new != self._refresh_token:
            self._refresh_token = new
            if self.on_rotate is not None:
                result = self.on_rotate(new)
                if isinstance(result, Awaitable):
                    await result
        return token


class StaticToken(TokenProvider):
    """A token obtained elsewhere; it cannot be renewed."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.access_token = token
        self.expires_at = float("inf")

    async def _renew(self) -> str:
        raise AuthError("the access token was refused or expired, and a static token cannot be renewed")

    def __repr__(self) -> str:
        return "StaticToken(...)"
