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
  ``on_rotate``), :class:`DeviceLogin` (a user signs in on another screen
  with a code, RFC 8628), or :class:`StaticToken`.
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

**SSE mode** (``connect(..., transport="sse")``, :class:`SseClient`): the
same stream over ``GET /sse`` where a WebSocket cannot go, with refresh
through ``POST /api/streams/ID/refresh`` and resume by ``Last-Event-ID``.

The HTTP calls (token endpoint, ``/api/publish``) use httpx, which runs on
trio; the client needs nothing beyond the server's own dependencies.
"""

from __future__ import annotations

from realtime.client.errors import (
    AuthError,
    ChannelError,
    ClientError,
    PublishError,
    TransportError,
)
from realtime.client.device import DeviceCode, DeviceLogin, Endpoint, poll_for_tokens, request_device_code
from realtime.client.http_client import MAX_RESPONSE_BYTES as MAX_RESPONSE_BYTES
from realtime.client.http_client import HttpResponse, http_request
from realtime.client.publish import publish_http
from realtime.client.session import Client, connect
from realtime.client.sse import SseClient
from realtime.client.token_providers import (
    ClientCredentials,
    RefreshToken,
    StaticToken,
    TokenProvider,
)
from realtime.client.wire import SUBPROTOCOL as SUBPROTOCOL
from realtime.client.wire import Message
from realtime.client.wire import ws_url_for as ws_url_for

__all__ = [
    "AuthError",
    "ChannelError",
    "Client",
    "ClientCredentials",
    "ClientError",
    "DeviceCode",
    "DeviceLogin",
    "Endpoint",
    "HttpResponse",
    "Message",
    "PublishError",
    "RefreshToken",
    "SseClient",
    "StaticToken",
    "TokenProvider",
    "TransportError",
    "connect",
    "http_request",
    "poll_for_tokens",
    "publish_http",
    "request_device_code",
]
