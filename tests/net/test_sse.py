"""``GET /sse`` against a real server (SPEC §13): httpx streaming."""

from __future__ import annotations

from typing import Any, Callable

import httpx
import pytest
import trio

from realtime.protocol.close import CloseCode
from tests.helpers.server import Running
from tests.helpers.sse import open_stream, sse_url
from tests.helpers.ws import api_publish


async def test_welcome_then_messages_with_an_id_for_every_channel(running: Running) -> None:
    token = running.mint(scope="chat:read chat:write")
    async with open_stream(running, "chat:a", "chat:b", token=token) as stream:
        welcome = await stream.next()
        assert welcome.name == "welcome"
        assert welcome.data["sub"] == "alice" and isinstance(welcome.data["stream"], str)
        assert welcome.data["expires_at"] > 0
        assert welcome.id == "chat:a=0,chat:b=0"
        assert (await api_publish(running, "chat:b", {"n": 1}, token)).status_code == 200
        assert (await api_publish(running, "chat:a", [2], token)).status_code == 200
        first, second = await stream.next(), await stream.next()
        assert first.name == second.name == "message"
        assert first.data == {"type": "message", "channel": "chat:b", "seq": 1, "from": "alice", "data": {"n": 1}}
        assert first.id == "chat:a=0,chat:b=1"
        assert second.data["data"] == [2] and second.id == "chat:a=1,chat:b=1"


async def test_bad_requests_get_a_status_and_json_before_any_stream(running: Running) -> None:
    token = running.mint(scope="chat:read")
    async with httpx.AsyncClient() as client:
        auth = {"authorization": f"Bearer {token}"}
        cases = [
            (sse_url(running, "chat:a"), {}, 401, "invalid_token"),
            (sse_url(running, "chat:a"), {"authorization": "Bearer nope"}, 401, "invalid_token"),
            (sse_url(running, "news:a"), auth, 403, "forbidden"),
            (sse_url(running, "user:bob"), auth, 403, "forbidden"),
            (sse_url(running, "nochan:a"), auth, 404, "unknown_channel"),
            (sse_url(running, "chat:a"), {**auth, "last-event-id": "garbage"}, 400, "bad_last_event_id"),
            (sse_url(running, "chat:a"), {**auth, "accept": "application/json"}, 406, "not_acceptable"),
            (sse_url(running, "chat:a", access_token=token), {}, 401, "invalid_token"),  # token_in_query off
            (sse_url(running, "chat:a", ticket="made-up"), {}, 401, "invalid_token"),
        ]
        for url, headers, status, error in cases:
            answer = await client.get(url, headers=headers)
            assert answer.status_code == status, (url, headers, answer.text)
            assert answer.headers["content-type"] == "application/json"
            assert answer.json()["error"] == error, answer.json()
        answer = await client.post(sse_url(running, "chat:a"), headers=auth)
        assert answer.status_code == 405


async def test_user_channel_is_the_default_and_private(running: Running) -> None:
    token = running.mint(sub="carol", scope="profile")  # no channel scope at all
    notifier = running.mint(sub="bob", scope="notify")
    async with open_stream(running, token=token) as stream:
        welcome = await stream.next()
        assert welcome.id == "user:carol=0"
        assert (await api_publish(running, "user:carol", {"hi": 1}, notifier)).status_code == 200
        message = await stream.next()
        assert message.data["channel"] == "user:carol" and message.data["data"] == {"hi": 1}


async def test_access_token_in_query_only_where_allowed(start_server: Callable[..., Any],
                                                         make_settings: Callable[..., Any]) -> None:
    running = await start_server(make_settings(websocket={"token_in_query": True, "ping_interval": 0}))
    token = running.mint()
    async with open_stream(running, "chat:a", access_token=token) as stream:
        assert (await stream.next()).name == "welcome"


async def test_pings_are_comments_every_ping_interval(start_server: Callable[..., Any],
                                                       make_settings: Callable[..., Any]) -> None:
    running = await start_server(make_settings(websocket={"ping_interval": 0.2}))
    token = running.mint()
    async with open_stream(running, "chat:a", token=token) as stream:
        await stream.next()
        with trio.fail_after(5):
            while stream.pings < 2:
                await api_publish(running, "chat:a", "tick", token)
                await stream.next()
        assert stream.pings >= 2


async def test_revoked_token_ends_the_stream_with_4003_within_a_second(running: Running) -> None:
    token = running.mint()
    async with open_stream(running, "chat:a", token=token) as stream:
        await stream.next()
        jti = next(iter(running.state.hub.connections.by_sub("alice"))).jti
        with trio.fail_after(1):
            assert running.state.revoke_access(jti, 2**31) == 1
            close = await stream.next()
        assert close.name == "close" and close.data == {"code": CloseCode.REVOKED}
        with pytest.raises(EOFError):  # and the response ends
            await stream.next()


async def test_shutdown_sends_close_1001(running: Running) -> None:
    token = running.mint()
    async with open_stream(running, "chat:a", token=token) as stream:
        await stream.next()
        running.stop()
        close = await stream.next()
        assert close.data == {"code": CloseCode.GOING_AWAY}
