"""The client's SSE mode (SPEC §13): the same logical stream as
:class:`realtime.client.Client`, over ``GET /sse`` instead of a WebSocket.

For where a WebSocket cannot go (a proxy that drops upgrades)::

    async with connect(url, tokens, ["chat:lobby"], transport="sse") as client:
        async for message in client:
            ...

- **Refresh without reconnecting**: on ``token_expiring`` it gets a new
  token from its provider and ``POST``s it to
  ``/api/streams/ID/refresh``; the stream answers ``refreshed``.  If that
  fails (the request reached another node, the provider is down) the
  stream ends with 4001 and the client reconnects with a new token.
- **Resume**: every reconnect sends ``Last-Event-ID`` (the last event id
  seen, which covers every channel), so nothing is missed or delivered
  twice; a ``recovered: false`` is logged and counted in :attr:`gaps`.
- Receive-only: publish with :func:`realtime.client.publish_http`.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpx
import trio

from realtime.client.backoff import reconnect_delay
from realtime.client.errors import AuthError, ChannelError, ClientError, TransportError
from realtime.client.http_client import describe_error
from realtime.client.inbox import Inbox
from realtime.client.token_providers import TokenProvider
from realtime.client.wire import Message
from realtime.protocol.close import NEEDS_NEW_TOKEN

__all__ = ["EventParser", "SseClient", "SseEvent"]

log = logging.getLogger("realtime.client")

SseEvent = tuple[str, str, "str | None"]  # (event name, data, id or None)


class EventParser:
    """Cuts SSE lines into events (WHATWG HTML §9.2.6, what this server sends)."""

    def __init__(self) -> None:
        self._name, self._data, self._id = "message", [], None  # type: tuple[str, list[str], str | None]

    def line(self, line: str) -> SseEvent | None:
        """Feed one line (without its end); an event when ``line`` ends one."""
        if line == "":
            event = None
            if self._data:
                event = (self._name, "\n".join(self._data), self._id)
            self._name, self._data, self._id = "message", [], None
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            self._name = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._id = value
        return None


class _Ended(Exception):
    def __init__(self, why: str, refresh: bool = False, worked: bool = True) -> None:
        super().__init__(why)
        self.refresh, self.worked = refresh, worked


class SseClient(Inbox):
    """One logical SSE subscription that survives reconnects.

    Same attributes as :class:`realtime.client.Client` (``connected``,
    ``sub``, ``expires_at``, ``connects``, ``refreshes``, ``gaps``,
    ``positions``, ``last_close``), plus ``stream_id`` and
    ``last_event_id``.
    """

    def __init__(
        self,
        url: str,
        tokens: TokenProvider,
        channels: Iterable[str] = (),
        *,
        ssl_context: ssl.SSLContext | None = None,
        last_event_id: str | None = None,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 90.0,
        queue_size: int = 1000,
    ) -> None:
        self.base_url = url.rstrip("/")
        self.tokens = tokens
        self.channels = list(dict.fromkeys(channels))
        self.ssl_context = ssl_context
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.timeout = httpx.Timeout(connect_timeout, read=read_timeout)
        self.positions: dict[str, int | None] = {c: None for c in self.channels}
        self.last_event_id = last_event_id
        self.connected = False
        self.sub: str | None = None
        self.stream_id: str | None = None
        self.expires_at = 0.0
        self.connects = self.refreshes = self.gaps = 0
        self.last_close: int | None = None
        self._send, self._recv = trio.open_memory_channel[Message](queue_size)
        self._failure: BaseException | None = None
        self._changed = trio.Event()

    async def run(self) -> None:
        """Stream and reconnect until cancelled or a fatal error."""
        verify: Any = self.ssl_context if self.ssl_context is not None else True
        try:
            async with httpx.AsyncClient(verify=verify, timeout=self.timeout) as http:
                await self._loop(http)
        except ClientError as exc:
            self._failure = exc
            log.error("%s", exc)
        finally:
            self.connected = False
            self._touch()
            self._send.close()

    async def _loop(self, http: httpx.AsyncClient) -> None:
        attempt, force_refresh = 0, False
        while True:
            if attempt:
                await trio.sleep(reconnect_delay(attempt, self.min_backoff, self.max_backoff))
            attempt += 1
            try:
                token = await (self.tokens.refresh() if force_refresh else self.tokens.token())
            except TransportError as exc:
                log.warning("cannot get a token: %s", exc)
                continue
            force_refresh = False
            try:
                await self._stream(http, token)
                why, refresh, worked = "the stream ended", False, True
            except _Ended as ended:
                why, refresh, worked = str(ended), ended.refresh, ended.worked
            except (httpx.HTTPError, OSError, ValueError) as exc:
                why, refresh, worked = f"stream broken: {describe_error(exc)}", False, self.connected
            self.connected = False
            self._touch()
            log.warning("SSE stream ended: %s", why)
            force_refresh = refresh
            if worked:
                attempt = 1

    async def _stream(self, http: httpx.AsyncClient, token: str) -> None:
        headers = {"accept": "text/event-stream", "authorization": f"Bearer {token}"}
        if self.last_event_id:
            headers["last-event-id"] = self.last_event_id
        params = [("channel", c) for c in self.channels]
        async with http.stream("GET", self.base_url + "/sse", params=params, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                _refused(response)
            parser = EventParser()
            ended: _Ended | None = None
            async with trio.open_nursery() as nursery:  # the refresh calls run beside the reading
                async for line in response.aiter_lines():
                    event = parser.line(line)
                    if event is not None:
                        ended = await self._handle(event, http, nursery)
                        if ended is not None:
                            break
                nursery.cancel_scope.cancel()
            if ended is not None:
                raise ended

    async def _handle(self, event: SseEvent, http: httpx.AsyncClient, nursery: trio.Nursery) -> "_Ended | None":
        name, raw, event_id = event
        data = json.loads(raw)
        if name == "message":
            await self._deliver(data)
        elif name == "welcome":
            self.sub, self.stream_id = data.get("sub"), data.get("stream")
            self.expires_at = float(data.get("expires_at") or 0)
            self.connected = True
            self.connects += 1
            log.info("SSE stream %s open as %s", self.stream_id, self.sub)
        elif name == "recovered" and data.get("recovered") is False:
            self.gaps += 1
            log.warning("the server could not replay every missed message")
        elif name == "token_expiring":
            nursery.start_soon(self._refresh, http)
        elif name == "refreshed":
            self.expires_at = float(data.get("expires_at") or 0)
            self.refreshes += 1
        elif name == "close":
            self.last_close = code = data.get("code")
            return _Ended(f"closed {code}", refresh=code in NEEDS_NEW_TOKEN)
        if event_id is not None:
            self.last_event_id = event_id
        self._touch()
        return None

    async def _deliver(self, msg: dict[str, Any]) -> None:
        channel, seq = msg.get("channel"), msg.get("seq")
        if not isinstance(channel, str) or not isinstance(seq, int):
            return
        last = self.positions.get(channel)
        if last is not None and seq <= last:
            return
        self.positions[channel] = seq
        await self._send.send(Message(channel, seq, str(msg.get("from")), msg.get("data")))

    async def _refresh(self, http: httpx.AsyncClient) -> None:
        """Move the stream's deadline (SPEC §13); on failure the 4001 and
        a reconnect with a new token do the job."""
        try:
            token = await self.tokens.refresh()
            answer = await http.post(f"{self.base_url}/api/streams/{self.stream_id}/refresh", json={"token": token})
        except (TransportError, httpx.HTTPError) as exc:
            log.warning("cannot refresh the stream (%s); it will end with 4001 and reconnect", exc)
            return
        if answer.status_code != 200:
            log.warning("stream refresh refused (HTTP %d); it will end with 4001 and reconnect", answer.status_code)
        elif self.expires_at - time.time() < 0:
            log.info("stream refreshed late")


def _refused(response: httpx.Response) -> None:
    """Turn a refused ``GET /sse`` into the client's verdict."""
    try:
        body = response.json()
        code, text = str(body.get("error")), str(body.get("error_description"))
    except (ValueError, AttributeError):
        code, text = "http_error", response.text[:200]
    status = response.status_code
    if status == 401:
        raise _Ended("the server refused the token (401)", refresh=True, worked=False)
    if status in (403, 404) or (status == 400 and code in ("bad_channel", "too_many_subscriptions")):
        raise ChannelError(",".join(response.request.url.params.get_list("channel")), code, text)
    if status in (400, 405, 406):
        raise AuthError(f"the server refused the stream: HTTP {status} {code}: {text}")
    raise _Ended(f"the server answered HTTP {status}", worked=False)
