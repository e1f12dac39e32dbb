"""A Python client for realtime, on trio + trio-websocket.

It does the token dance so the caller does not have to::

    from realtime.client import ClientCredentials, connect

    tokens = ClientCredentials("https://localhost:8443", "backend-7f3c2a", secret)
    async with connect("https://localhost:8443", tokens, ["chat:lobby"]) as client:
        async for message in client:
            print(message.channel, message.seq, message.sender, message.data)

- **Tokens** come from a :class:`TokenProvider`: :class:`ClientCredentials`
  (a confidential app's id and secret), :class:`RefreshToken` (a refresh
  token from a user's login; rotated on every use, the new one handed to
  ``on_rotate``), or :class:`StaticToken`.
- **Refresh in-band.** On ``token_expiring`` the client gets a new token
  from its provider and sends ``{"type":"refresh"}``: the socket stays open.
- **Reconnect with recovery.** When the connection drops (network, 4001,
  4003, shutdown, slow consumer) it reconnects with exponential backoff
  and jitter and re-subscribes with ``since`` = the last ``seq`` it
  delivered per channel, so nothing is missed or delivered twice.  When
  the server cannot replay everything (it restarted, or the outage outlived
  its history) the gap is logged and counted in :attr:`Client.gaps`.
- **Fatal errors** (bad credentials, a channel the token may not use) end
  the iteration with :class:`AuthError` / :class:`ChannelError` instead of
  retrying forever.

Recovery starts from the first message received on a channel.  Pass
``history=True`` to also get the messages the server keeps at subscribe
time; the position is then known from the start.

The HTTP calls (token endpoint, ``/api/publish``) use httpx, which runs on
trio; the client needs nothing beyond the server's own dependencies.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import attrs
import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    connect_websocket_url,
)

__all__ = [
    "AuthError",
    "ChannelError",
    "Client",
    "ClientCredentials",
    "ClientError",
    "HttpResponse",
    "Message",
    "PublishError",
    "RefreshToken",
    "StaticToken",
    "TokenProvider",
    "TransportError",
    "connect",
    "http_request",
    "publish_http",
]

log = logging.getLogger("realtime.client")

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
SUBPROTOCOL = "realtime.v1"


# ---------------------------------------------------------------------------
# errors


class ClientError(Exception):
    """Base class of everything this module raises on purpose."""


class TransportError(ClientError):
    """The server could not be reached or the connection broke: retryable."""


class AuthError(ClientError):
    """The server refused the credentials or the token: retrying will not help."""


class ChannelError(ClientError):
    """A subscription was refused (unknown channel, missing scope)."""

    def __init__(self, channel: str, code: str, message: str) -> None:
        super().__init__(f"{channel}: {code}: {message}")
        self.channel, self.code, self.message = channel, code, message


class PublishError(ClientError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


# ---------------------------------------------------------------------------
# HTTP: httpx (it runs on trio through anyio)


@attrs.frozen
class HttpResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


async def http_request(
    method: str,
    url: str,
    *,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 15.0,
) -> HttpResponse:
    """One request; the answer is read whole, up to MAX_RESPONSE_BYTES.

    Raises:
        TransportError: connect, TLS or protocol failure, an oversized
            answer, or ``timeout`` passed (for the whole exchange).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        with trio.fail_after(timeout):
            async with httpx.AsyncClient(verify=ssl_context or True, timeout=timeout,
                                         follow_redirects=False) as client:
                async with client.stream(method, url, content=body,
                                         headers=[("user-agent", "realtime-client"), *headers]) as resp:
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_RESPONSE_BYTES:
                            raise TransportError(f"{method} {_where(url)}: response too large")
                        chunks.append(chunk)
                    return HttpResponse(resp.status_code, tuple(resp.headers.multi_items()), b"".join(chunks))
    except trio.TooSlowError:
        raise TransportError(f"{method} {_where(url)}: no answer within {timeout:g} s") from None
    except (OSError, httpx.HTTPError) as exc:
        raise TransportError(f"{method} {_where(url)}: {_describe(exc)}") from None


def _where(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _oauth_error(resp: HttpResponse) -> str:
    body = resp.json()
    if isinstance(body, dict) and "error" in body:
        desc = body.get("error_description")
        return f"{body['error']}: {desc}" if desc else str(body["error"])
    return f"HTTP {resp.status}"


# ---------------------------------------------------------------------------
# token providers


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
            raise TransportError(f"token endpoint: {_oauth_error(resp)}")
        raise AuthError(f"token endpoint refused: {_oauth_error(resp)}")


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


async def publish_http(base_url: str, tokens: TokenProvider, channel: str, data: Any, *,
                       ssl_context: ssl.SSLContext | None = None) -> dict[str, Any]:
    """``POST /api/publish``; returns ``{"delivered": N, "seq": S}``.

    A 401 gets one retry with a new token.

    Raises:
        AuthError: the token was refused, or lacks the channel's publish scope.
        PublishError: the server refused the message (unknown channel, bad data).
        TransportError: the server could not be reached.
    """
    url = base_url.rstrip("/") + "/api/publish"
    body = json.dumps({"channel": channel, "data": data}).encode()
    token = await tokens.token()
    for attempt in range(2):
        resp = await http_request("POST", url, body=body, ssl_context=ssl_context, headers=[
            ("content-type", "application/json"), ("authorization", f"Bearer {token}")])
        if resp.status == 401 and attempt == 0:
            token = await tokens.refresh()
            continue
        break
    if resp.status == 200:
        return resp.json()
    if resp.status in (401, 403):
        raise AuthError(f"publish refused: {_oauth_error(resp)}")
    if resp.status >= 500:
        raise TransportError(f"publish failed: {_oauth_error(resp)}")
    info = resp.json() if isinstance(resp.json(), dict) else {}
    raise PublishError(str(info.get("error", resp.status)), str(info.get("error_description", "")))


# ---------------------------------------------------------------------------
# the WebSocket client


@attrs.frozen
class Message:
    """One ``message`` from a channel."""

    channel: str
    seq: int
    sender: str
    data: Any

    def to_json(self) -> dict[str, Any]:
        return {"channel": self.channel, "seq": self.seq, "from": self.sender, "data": self.data}


class _Reconnect(Exception):
    """Leave this connection and open a new one."""

    def __init__(self, why: str, refresh: bool = False) -> None:
        super().__init__(why)
        self.refresh = refresh


def ws_url_for(url: str, ws_path: str = "/ws") -> str:
    """``https://host:8443`` -> ``wss://host:8443/ws``; a ws(s):// URL is kept."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
    path = parts.path if parts.scheme in ("ws", "wss") and parts.path not in ("", "/") else ws_path
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


class Client:
    """One logical subscription stream that survives reconnects.

    Use :func:`connect` to run it; iterate it for :class:`Message` values.

    Attributes (for display and tests): ``connected``, ``sub``,
    ``expires_at`` (epoch of the connection's current deadline),
    ``connects``, ``refreshes`` (good in-band refreshes), ``gaps``
    (recoveries the server could not complete), ``positions`` (last ``seq``
    delivered per channel).
    """

    def __init__(
        self,
        url: str,
        tokens: TokenProvider,
        channels: Iterable[str] = (),
        *,
        ws_path: str = "/ws",
        ssl_context: ssl.SSLContext | None = None,
        history: bool = False,
        since: Mapping[str, int] | None = None,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        connect_timeout: float = 10.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 10.0,
        queue_size: int = 1000,
        max_message_size: int = 1024 * 1024,
    ) -> None:
        self.ws_url = ws_url_for(url, ws_path)
        self.tokens = tokens
        self.channels: list[str] = list(dict.fromkeys(channels))
        self.ssl_context = ssl_context
        self.history = history
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.connect_timeout = connect_timeout
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.max_message_size = max_message_size
        # Last seq delivered per channel; None: not known yet.
        self.positions: dict[str, int | None] = {c: None for c in self.channels}
        self._initial_since = dict(since or {})
        self.connected = False
        self.sub: str | None = None
        self.expires_at = 0.0
        self.connects = self.refreshes = self.gaps = 0
        self.last_close: int | None = None
        self._send, self._recv = trio.open_memory_channel[Message](queue_size)
        self._failure: BaseException | None = None
        self._ws: WebSocketConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, str, bool]] = {}  # id -> (kind, channel, recovering)
        self._waiters: dict[int, list[Any]] = {}  # id -> [Event, reply]
        self._changed = trio.Event()
        self._stopped = False

    # -- the caller's side ------------------------------------------------------
    def __aiter__(self) -> "Client":
        return self

    async def __anext__(self) -> Message:
        try:
            return await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._failure is not None:
                raise self._failure from None
            raise StopAsyncIteration from None

    async def wait_until(self, predicate: Callable[["Client"], bool], timeout: float | None = None) -> None:
        """Wait until ``predicate(client)`` holds (checked on each state change).

        Raises:
            trio.TooSlowError: ``timeout`` passed first.
            ClientError: the client stopped for good first.
        """
        with trio.fail_after(timeout) if timeout is not None else _no_deadline():
            while not predicate(self):
                if self._failure is not None:
                    raise self._failure
                await self._changed.wait()

    async def publish(self, channel: str, data: Any, timeout: float = 10.0) -> int:
        """Publish over the socket; returns the message's ``seq``.

        Waits for a connection (up to ``timeout``).  Raises
        :class:`PublishError` when refused and :class:`TransportError` when
        the connection drops before the server answers.
        """
        with trio.fail_after(timeout):
            await self.wait_until(lambda c: c.connected)
            reply = await self._call({"type": "publish", "channel": channel, "data": data})
        if reply.get("type") == "error":
            raise PublishError(str(reply.get("code")), str(reply.get("message")))
        return int(reply.get("seq", 0))

    async def subscribe(self, channel: str) -> None:
        """Add a channel (kept across reconnects).  A refusal ends the client
        with :class:`ChannelError`, as for the initial channels."""
        if channel in self.channels:
            return
        self.channels.append(channel)
        self.positions.setdefault(channel, None)
        if self._ws is not None and self.connected:
            await self._subscribe(self._ws, channel, initial=True)

    # -- plumbing ---------------------------------------------------------------
    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _call(self, obj: dict[str, Any]) -> dict[str, Any]:
        ws = self._ws
        if ws is None:
            raise TransportError("not connected")
        mid = next(self._ids)
        slot: list[Any] = [trio.Event(), None]
        self._waiters[mid] = slot
        try:
            await ws.send_message(json.dumps({**obj, "id": mid}))
            await slot[0].wait()
        except ConnectionClosed:
            raise TransportError("the connection closed before the server answered") from None
        finally:
            self._waiters.pop(mid, None)
        if slot[1] is None:
            raise TransportError("the connection closed before the server answered")
        return slot[1]

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_backoff, self.min_backoff * 2 ** max(0, attempt - 1))
        return base * random.uniform(0.75, 1.25)

    async def run(self) -> None:
        """Connect, stream, and reconnect until cancelled or a fatal error.

        A fatal error is kept and raised to the iterating caller; the message
        stream then ends.
        """
        try:
            await self._loop()
        except ClientError as exc:
            self._failure = exc
            log.error("%s", exc)
        finally:
            self.connected = False
            self._touch()
            self._send.close()

    async def _loop(self) -> None:
        attempt = 0
        force_refresh = False
        while True:
            if attempt:
                delay = self._backoff(attempt)
                log.info("reconnecting in %.1f s", delay)
                await trio.sleep(delay)
            attempt += 1
            try:
                token = await (self.tokens.refresh() if force_refresh else self.tokens.token())
            except TransportError as exc:
                log.warning("cannot get a token: %s", exc)
                continue
            force_refresh = False
            try:
                await self._connection(token)
            except BaseException as exc:  # noqa: BLE001 - sorted by _verdict
                verdict = _verdict(exc)
                self.connected = False
                self._ws = None
                self._fail_waiters()
                self._touch()
                if verdict is None:
                    raise
                why, refresh, reset = verdict
                log.warning("connection ended: %s", why)
                force_refresh = refresh
                if reset:
                    attempt = 1  # the connection had worked: retry soon

    async def _connection(self, token: str) -> None:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(self.connect_timeout):
                ws = await connect_websocket_url(
                    nursery, self.ws_url, self.ssl_context, subprotocols=[SUBPROTOCOL],
                    extra_headers=[(b"authorization", f"Bearer {token}".encode())],
                    message_queue_size=64, max_message_size=self.max_message_size,
                )
                try:
                    welcome = json.loads(await ws.get_message())
                except ValueError:
                    raise _Reconnect("the server sent something other than JSON") from None
            try:
                if welcome.get("type") != "welcome":
                    raise _Reconnect(f"expected welcome, got {welcome.get('type')!r}")
                self.sub = welcome.get("sub")
                self.expires_at = float(welcome.get("expires_at") or 0)
                self._ws = ws
                self.connected = True
                self.connects += 1
                self._touch()
                log.info("connected to %s as %s", self.ws_url, self.sub)
                for channel in list(self.channels):
                    await self._subscribe(ws, channel, initial=self.connects == 1)
                if self.ping_interval > 0:
                    nursery.start_soon(self._keepalive, ws)
                await self._read(ws, nursery)
            finally:
                self._ws = None
                self.connected = False
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await ws.aclose()
                if ws.closed is not None:
                    self.last_close = ws.closed.code

    async def _subscribe(self, ws: WebSocketConnection, channel: str, *, initial: bool) -> None:
        msg: dict[str, Any] = {"type": "subscribe", "channel": channel}
        position = self.positions.get(channel)
        recovering = position is not None
        if recovering:
            msg["since"] = position
        elif initial and channel in self._initial_since:
            msg["since"] = self._initial_since[channel]
            recovering = True
        elif initial and self.history:
            msg["since"] = 0
        mid = next(self._ids)
        self._pending[mid] = ("subscribe", channel, recovering)
        await ws.send_message(json.dumps({**msg, "id": mid}))

    async def _keepalive(self, ws: WebSocketConnection) -> None:
        """A server that stops answering pings is gone (a pulled cable):
        close and reconnect rather than wait forever."""
        while True:
            await trio.sleep(self.ping_interval)
            with trio.move_on_after(self.ping_timeout) as scope:
                try:
                    await ws.ping()
                except ConnectionClosed:
                    return
            if scope.cancelled_caught:
                log.warning("no pong within %g s: reconnecting", self.ping_timeout)
                await ws.aclose(code=1001, reason="ping timeout")
                return

    async def _read(self, ws: WebSocketConnection, nursery: trio.Nursery) -> None:
        while True:
            raw = await ws.get_message()
            try:
                msg = json.loads(raw)
            except ValueError:
                log.warning("ignoring a message that is not JSON")
                continue
            kind = msg.get("type") if isinstance(msg, dict) else None
            if kind == "message":
                await self._deliver(msg)
            elif kind == "token_expiring":
                log.info("token expiring: refreshing in-band")
                nursery.start_soon(self._refresh_in_band, ws)
            elif kind == "refreshed":
                self.expires_at = float(msg.get("expires_at") or 0)
                self.refreshes += 1
                self._touch()
                log.info("token refreshed; connection kept")
            elif kind in ("ack", "error", "pong", "presence"):
                self._answer(msg)

    async def _refresh_in_band(self, ws: WebSocketConnection) -> None:
        while True:
            try:
                token = await self.tokens.refresh()
                break
            except TransportError as exc:
                if self.expires_at - time.time() < 2:
                    log.warning("cannot refresh (%s); the server will close with 4001 and we reconnect", exc)
                    return
                log.warning("cannot refresh yet (%s); retrying", exc)
                await trio.sleep(1.0)
        try:
            await ws.send_message(json.dumps({"type": "refresh", "id": next(self._ids), "token": token}))
        except ConnectionClosed:
            pass

    async def _deliver(self, msg: dict[str, Any]) -> None:
        channel, seq = msg.get("channel"), msg.get("seq")
        if not isinstance(channel, str) or not isinstance(seq, int):
            return
        last = self.positions.get(channel)
        if last is not None:
            if seq <= last:
                return  # a replay overlapping what was delivered
            if seq > last + 1:
                self.gaps += 1
                log.warning("%s: %d message(s) missing before seq %d", channel, seq - last - 1, seq)
        self.positions[channel] = seq
        await self._send.send(Message(channel, seq, str(msg.get("from")), msg.get("data")))
        self._touch()

    def _answer(self, msg: dict[str, Any]) -> None:
        mid = msg.get("id")
        pending = self._pending.pop(mid, None) if isinstance(mid, int) else None
        if pending is not None:
            _, channel, recovering = pending
            if msg.get("type") == "error":
                raise ChannelError(channel, str(msg.get("code")), str(msg.get("message")))
            if msg.get("recovered") is False and recovering:
                # The server no longer has everything after our position (it
                # restarted, or the outage outlived its history): follow its
                # numbering from here.
                self.gaps += 1
                self.positions[channel] = None
                log.warning("%s: the server could not replay every missed message", channel)
                self._touch()
            return
        waiter = self._waiters.get(mid) if mid is not None else None
        if waiter is not None:
            waiter[1] = msg
            waiter[0].set()
        elif msg.get("type") == "error":
            code = msg.get("code")
            if code == "invalid_token":
                raise _Reconnect(f"the server refused the refreshed token: {msg.get('message')}", refresh=True)
            log.warning("server error: %s: %s", code, msg.get("message"))

    def _fail_waiters(self) -> None:
        for slot in self._waiters.values():
            slot[0].set()
        self._pending.clear()


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(_leaves(inner))
        return out
    return [exc]


#: close codes after which a new token is needed before reconnecting
_REFRESH_CODES = {4001, 4003}


def _verdict(exc: BaseException) -> tuple[str, bool, bool] | None:
    """How a connection ended: (why, get a new token first, it had worked),
    or None to let the exception through (cancellation, fatal, a bug)."""
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, (trio.Cancelled, KeyboardInterrupt, SystemExit)):
            return None
    for leaf in leaves:
        if isinstance(leaf, (AuthError, ChannelError)):
            raise leaf
    leaf = leaves[0]
    if isinstance(leaf, ConnectionRejected):
        if leaf.status_code == 401:
            return "the server refused the token (401)", True, False
        if leaf.status_code == 403:
            raise AuthError("the token allows no channel (403 insufficient_scope)")
        return f"the handshake was refused with HTTP {leaf.status_code}", False, False
    if isinstance(leaf, ConnectionClosed):
        code = leaf.reason.code if leaf.reason is not None else None
        reason = leaf.reason.reason if leaf.reason is not None else None
        return f"closed {code}{f' ({reason})' if reason else ''}", code in _REFRESH_CODES, True
    if isinstance(leaf, _Reconnect):
        return str(leaf), leaf.refresh, True
    if isinstance(leaf, trio.TooSlowError):
        return "the server did not answer the handshake in time", False, False
    if isinstance(leaf, (OSError, HandshakeError, trio.BrokenResourceError, TransportError)):
        return f"cannot connect: {_describe(leaf)}", False, False
    return None


class _no_deadline:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@asynccontextmanager
async def connect(url: str, tokens: TokenProvider, channels: Iterable[str] = (), **options: Any) -> AsyncIterator[Client]:
    """Run a :class:`Client` for the body of the ``async with``.

    ``url`` is the server's base (``https://host:8443``) or its WebSocket URL;
    ``options`` go to :class:`Client`.
    """
    client = Client(url, tokens, channels, **options)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.run)
        try:
            yield client
        finally:
            nursery.cancel_scope.cancel()
