"""``GET /sse`` against a real server (SPEC §13): httpx streaming."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import httpx
import pytest
import trio

from realtime.config.settings import ApiSettings
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


async def _ticket(client: httpx.AsyncClient, running: Running, token: str) -> str:
    answer = await client.post(running.url("/api/ticket"), headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"ticket", "expires_in"} and body["expires_in"] == 30
    assert answer.headers["cache-control"] == "no-store"
    return str(body["ticket"])


async def test_a_ticket_opens_one_stream_once(running: Running) -> None:
    token = running.mint()
    async with httpx.AsyncClient() as client:
        ticket = await _ticket(client, running, token)
        async with open_stream(running, "chat:a", ticket=ticket, client=client) as stream:
            welcome = await stream.next()
            assert welcome.data["sub"] == "alice"
            assert welcome.data["expires_at"] == running.state.keyring.verify(
                token, issuer=running.state.settings.issuer, audience=running.state.settings.audience).exp
        again = await client.get(sse_url(running, "chat:a", ticket=ticket))
        assert again.status_code == 401 and again.json()["error"] == "invalid_token"
        # No ticket without a good bearer token; a ticket is not a bearer token.
        assert (await client.post(running.url("/api/ticket"))).status_code == 401
        other = await _ticket(client, running, token)
        refused = await client.get(sse_url(running, "chat:a"), headers={"authorization": f"Bearer {other}"})
        assert refused.status_code == 401


async def test_a_ticket_is_not_spent_on_a_malformed_request(running: Running) -> None:
    token = running.mint()
    async with httpx.AsyncClient() as client:
        ticket = await _ticket(client, running, token)
        wrong = await client.get(sse_url(running, "chat:a", ticket=ticket), headers={"accept": "application/json"})
        assert wrong.status_code == 406
        not_ws = await client.get(running.url(f"/ws?ticket={ticket}"),
                                  headers={"upgrade": "websocket", "connection": "Upgrade"})
        assert not_ws.status_code in (400, 426)  # no Sec-WebSocket-Version/Key
        async with open_stream(running, "chat:a", ticket=ticket, client=client) as stream:
            assert (await stream.next()).name == "welcome"


async def test_a_ticket_never_outlives_its_token(running: Running) -> None:
    token = running.mint(ttl=10)
    async with httpx.AsyncClient() as client:
        answer = await client.post(running.url("/api/ticket"), headers={"authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and 8 <= answer.json()["expires_in"] <= 10


async def test_a_ticket_of_a_revoked_token_is_refused(running: Running) -> None:
    token = running.mint()
    async with httpx.AsyncClient() as client:
        ticket = await _ticket(client, running, token)
        claims = running.state.keyring.verify(token, issuer=running.state.settings.issuer,
                                              audience=running.state.settings.audience)
        running.state.revoke_access(claims.jti, claims.exp)
        answer = await client.get(sse_url(running, "chat:a", ticket=ticket))
        assert answer.status_code == 401 and "revoked" in answer.json()["error_description"]


async def test_a_ticket_opens_a_websocket_once(running: Running) -> None:
    from trio_websocket import HandshakeError, open_websocket_url

    token = running.mint()
    async with httpx.AsyncClient() as client:
        ticket = await _ticket(client, running, token)
    url = running.url(f"/ws?ticket={ticket}", "ws")
    async with open_websocket_url(url) as ws:
        welcome = json.loads(await ws.get_message())
        assert welcome["type"] == "welcome" and welcome["sub"] == "alice"
    with pytest.raises(HandshakeError) as refused:
        async with open_websocket_url(url):
            pass
    assert getattr(refused.value, "status_code", 401) == 401


async def test_refresh_moves_the_deadline_and_the_stream_outlives_its_first_token(
        start_server: Callable[..., Any], make_settings: Callable[..., Any]) -> None:
    running = await start_server(make_settings(websocket={"expiry_warning": 0.5, "ping_interval": 0}))
    first = running.mint(ttl=2)
    async with open_stream(running, "chat:a", token=first) as stream, httpx.AsyncClient() as client:
        welcome = await stream.next()
        stream_id = welcome.data["stream"]
        url = running.url(f"/api/streams/{stream_id}/refresh")
        # Another user's token, a bad token, a bad body, an unknown stream: refused.
        foreign = await client.post(url, json={"token": running.mint(sub="bob", scope="chat:read")})
        assert foreign.status_code == 403 and foreign.json()["error"] == "invalid_token"
        assert (await client.post(url, json={"token": "x.y.z"})).status_code == 401
        assert (await client.post(url, json={"tok": first})).status_code == 400
        unknown = await client.post(running.url("/api/streams/nope/refresh"), json={"token": first})
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_stream"
        later = running.mint(ttl=60)
        answer = await client.post(url, json={"token": later})
        assert answer.status_code == 200
        expires_at = answer.json()["expires_at"]
        refreshed = await stream.next()
        assert refreshed.name == "refreshed" and refreshed.data["expires_at"] == expires_at
        # Wait past the first token's exp (2 s): the stream still delivers.
        await trio.sleep(2.5)
        assert (await api_publish(running, "chat:a", "still here", later)).status_code == 200
        message = await stream.next()
        assert message.name == "message" and message.data["data"] == "still here"


async def test_bad_refreshes_by_a_stranger_do_not_spend_the_owners_allowance(
        start_server: Callable[..., Any], make_settings: Callable[..., Any]) -> None:
    # Whoever learns a stream id must not be able to make its owner's real
    # refresh fail: only a token of the stream's own principal is charged.
    running = await start_server(make_settings(websocket={"ping_interval": 0}, api=ApiSettings(publish_rate="3/m")))
    async with open_stream(running, "chat:a", token=running.mint()) as stream, httpx.AsyncClient() as client:
        url = running.url(f"/api/streams/{(await stream.next()).data['stream']}/refresh")
        stranger = [await client.post(url, json={"token": "x.y.z"}) for _ in range(10)]
        assert {answer.status_code for answer in stranger} == {401}
        answer = await client.post(url, json={"token": running.mint(ttl=60)})
        assert answer.status_code == 200, answer.text


async def test_the_stream_ends_with_4001_at_its_tokens_exp(start_server: Callable[..., Any],
                                                            make_settings: Callable[..., Any]) -> None:
    running = await start_server(make_settings(websocket={"expiry_warning": 1.0, "ping_interval": 0}))
    token = running.mint(ttl=2)
    async with open_stream(running, "chat:a", token=token) as stream:
        welcome = await stream.next()
        with trio.fail_after(5):
            warning = await stream.next()
            assert warning.name == "token_expiring" and warning.data["expires_at"] == welcome.data["expires_at"]
            close = await stream.next()
        assert close.name == "close" and close.data == {"code": CloseCode.TOKEN_EXPIRED}
        assert time.time() >= welcome.data["expires_at"] - 0.05


async def test_last_event_id_resumes_without_gap_or_repeat(running: Running) -> None:
    token = running.mint()
    async with open_stream(running, "chat:a", "chat:b", token=token) as stream:
        await stream.next()
        for n in range(3):
            await api_publish(running, "chat:a" if n % 2 else "chat:b", n, token)
        seen = [await stream.next() for _ in range(3)]
        last_id = seen[-1].id
    assert last_id == "chat:a=1,chat:b=2"
    for n in range(3, 7):
        await api_publish(running, "chat:a" if n % 2 else "chat:b", n, token)
    for how in ("header", "query"):
        extra: dict[str, Any] = {"headers": {"last-event-id": last_id}} if how == "header" else {"last_event_id": last_id}
        async with open_stream(running, "chat:a", "chat:b", token=token, **extra) as stream:
            assert (await stream.next()).name == "welcome"
            recovered = await stream.next()
            assert recovered.name == "recovered" and recovered.data == {"recovered": True}
            replayed = [await stream.next() for _ in range(4)]
            # Each channel in order, nothing missed, nothing twice.
            by_channel = {c: [e.data["data"] for e in replayed if e.data["channel"] == c] for c in ("chat:a", "chat:b")}
            assert by_channel == {"chat:a": [3, 5], "chat:b": [4, 6]}
            assert replayed[-1].id == "chat:a=3,chat:b=4"
            if how == "query":
                await api_publish(running, "chat:a", "live", token)
                live = await stream.next()
                assert live.data["data"] == "live" and live.data["seq"] == 4 and live.id == "chat:a=4,chat:b=4"


async def test_a_position_past_the_history_says_not_recovered(running: Running) -> None:
    token = running.mint(scope="news:read news:write chat:read")
    async with httpx.AsyncClient() as client:
        for n in range(8):  # news:* keeps 5
            await client.post(running.url("/api/publish"), json={"channel": "news:x", "data": n},
                              headers={"authorization": f"Bearer {running.mint(scope='news:write')}"})
    async with open_stream(running, "news:x", token=token, last_event_id="news:x=1") as stream:
        await stream.next()
        assert (await stream.next()).data == {"recovered": False}
        kept = [await stream.next() for _ in range(5)]
        assert [event.data["seq"] for event in kept] == [4, 5, 6, 7, 8]


async def test_sse_over_tls(running: Running, client_ssl: Any) -> None:
    token = running.mint()
    async with httpx.AsyncClient(verify=client_ssl) as client:
        async with open_stream(running, "chat:a", token=token, client=client, scheme="https") as stream:
            assert (await stream.next()).name == "welcome"
            assert stream.response.headers["x-content-type-options"] == "nosniff"
            await api_publish(running, "chat:a", "over tls", token)
            assert (await stream.next()).data["data"] == "over tls"


def _events(raw: bytes) -> list[tuple[str, Any]]:
    """(name, data) of every whole event in a raw response body."""
    out = []
    for block in raw.split(b"\n\n"):
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line and not line.startswith(b":"))
        if b"event" in fields:
            out.append((fields[b"event"].decode(), json.loads(fields[b"data"])))
    return out


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
async def test_a_slow_reader_gets_close_4009_after_whole_events(start_server: Callable[..., Any],
                                                                 make_settings: Callable[..., Any],
                                                                 client_ssl: Any, tls: bool) -> None:
    import socket

    running = await start_server(make_settings(websocket={
        "ping_interval": 0, "max_backlog_bytes": 64 * 1024, "publish_rate": "100000/s",
        "message_rate": "100000/s"}))
    addr = running.https if tls else running.http
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)  # a real link's segments, as test_backpressure
    await sock.connect((addr.host, addr.port))
    stream: Any = trio.SocketStream(sock)
    if tls:
        stream = trio.SSLStream(stream, client_ssl, server_hostname="localhost", https_compatible=True)
    token = running.mint("bob", "chat:read")
    await stream.send_all(f"GET /sse?channel=chat:flood HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n"
                          f"authorization: Bearer {token}\r\n\r\n".encode())
    raw = await stream.receive_some(65536)
    while b"event: welcome" not in raw:
        raw += await stream.receive_some(65536)
    session = next(s for s in running.server.sessions if s.sub == "bob")
    publisher = running.mint(scope="chat:write")
    pad = "x" * 8192
    with trio.fail_after(60):
        async with httpx.AsyncClient() as client:
            seq = 0
            while session.close_code is None:  # bob reads nothing meanwhile
                seq += 1
                assert seq <= 5000, "the slow consumer was never closed"
                await client.post(running.url("/api/publish"), json={"channel": "chat:flood", "data": pad},
                                  headers={"authorization": f"Bearer {publisher}"})
        while True:
            try:
                more = await stream.receive_some(65536)
            except (trio.BrokenResourceError, Exception):  # noqa: BLE001 - a reset after the close is the end too
                break
            if not more:
                break
            raw += more
            await trio.sleep(len(more) / (32 * 1024))  # the pace of a slow link, not a synchronisation
    events = _events(raw)
    assert events[0][0] == "welcome"
    seqs = [data["seq"] for name, data in events if name == "message"]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) < seq  # whole events, in order, a tail dropped
    assert events[-1] == ("close", {"code": CloseCode.SLOW_CONSUMER})
