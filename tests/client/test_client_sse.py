"""realtime.client's SSE mode against a real server: refresh through
``POST /api/streams/ID/refresh`` without reconnecting, reconnect with
``Last-Event-ID`` after 4001/1006/4003, fatal errors, and the parser."""

from __future__ import annotations

import time
from typing import Any, Callable

import attrs
import pytest
import trio

from realtime.client import ChannelError, ClientCredentials, connect
from realtime.client.sse import EventParser
from realtime.config.settings import App, Settings
from realtime.oauth.passwords import hash_secret
from realtime.protocol.close import CloseCode

SECRET = "s3cret-for-sse-tests-only-9c2e"
WRITE = frozenset({"chat:write"})


@pytest.fixture(scope="module")
def secret_hash() -> str:
    return hash_secret(SECRET)


@pytest.fixture
def settings(make_settings: Callable[..., Settings], secret_hash: str) -> Settings:
    """A confidential app with 3-second tokens, warned 2 s ahead."""
    base = make_settings(websocket={"expiry_warning": 2.0, "ping_interval": 0})
    apps = dict(base.apps)
    apps["svc"] = App(name="Service", client_id="svc", client_secret_hash=secret_hash,
                      grant_types=("client_credentials",), scopes=("chat:read", "chat:write"), access_token_ttl=3.0)
    return attrs.evolve(base, apps=apps)


async def next_message(client: Any, timeout: float = 10.0) -> Any:
    with trio.fail_after(timeout):
        return await client.__anext__()


def test_parser_cuts_events_and_skips_comments() -> None:
    parser = EventParser()
    lines = [": ping", "", "event: welcome", 'data: {"a":', "data: 1}", "id: c=1", "", "data: x", ""]
    events = [e for e in (parser.line(line) for line in lines) if e is not None]
    assert events == [("welcome", '{"a":\n1}', "c=1"), ("message", "x", None)]


async def test_sse_mode_refreshes_without_reconnecting(start_server: Any, settings: Settings) -> None:
    running = await start_server(settings)
    tokens = ClientCredentials(running.url(""), "svc", SECRET)
    async with connect(running.url(""), tokens, ["chat:room"], transport="sse") as client:
        await client.wait_until(lambda c: c.connected, timeout=10)
        assert client.sub == "svc" and client.stream_id
        running.state.hub.publish("chat:room", {"text": "hello"}, from_sub="svc", scopes=WRITE)
        message = await next_message(client)
        assert (message.channel, message.seq, message.sender, message.data) == ("chat:room", 1, "svc", {"text": "hello"})
        # 3 s tokens, warned 2 s ahead: two refreshes pass within seconds.
        await client.wait_until(lambda c: c.refreshes >= 2, timeout=20)
        assert client.connects == 1, "a refresh must not reconnect"
        assert client.expires_at > time.time()
        running.state.hub.publish("chat:room", "still here", from_sub="svc", scopes=WRITE)
        assert (await next_message(client)).seq == 2


@pytest.mark.parametrize("code", [CloseCode.TOKEN_EXPIRED, CloseCode.ABORT, CloseCode.REVOKED])
async def test_sse_mode_reconnects_with_last_event_id(start_server: Any, settings: Settings, code: int) -> None:
    running = await start_server(settings)
    hub = running.state.hub
    tokens = ClientCredentials(running.url(""), "svc", SECRET)
    async with connect(running.url(""), tokens, ["chat:rec"], transport="sse", min_backoff=0.05) as client:
        await client.wait_until(lambda c: c.connected, timeout=10)
        hub.publish("chat:rec", "one", from_sub="svc", scopes=WRITE)
        assert (await next_message(client)).data == "one"
        (conn,) = hub.connections.by_sub("svc")
        conn.withdraw(code, "test")
        hub.publish("chat:rec", "two", from_sub="svc", scopes=WRITE)
        hub.publish("chat:rec", "three", from_sub="svc", scopes=WRITE)
        got = [await next_message(client), await next_message(client)]
        assert [(m.data, m.seq) for m in got] == [("two", 2), ("three", 3)]
        assert client.connects == 2 and client.gaps == 0
        if code != CloseCode.ABORT:
            assert client.last_close == code
        await client.wait_until(lambda c: c.connected, timeout=10)
        hub.publish("chat:rec", "four", from_sub="svc", scopes=WRITE)
        assert (await next_message(client)).seq == 4


async def test_sse_mode_refused_channel_is_fatal(start_server: Any, settings: Settings) -> None:
    running = await start_server(settings)
    tokens = ClientCredentials(running.url(""), "svc", SECRET)
    async with connect(running.url(""), tokens, ["news:nope"], transport="sse") as client:
        with pytest.raises(ChannelError), trio.fail_after(10):
            await client.__anext__()
