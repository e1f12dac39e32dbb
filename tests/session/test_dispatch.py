"""The session's message logic (realtime/session/dispatch.py) with no socket
and no clock: a message and a peer in, a Reply out (SPEC §4, §5, §5a)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from realtime.config.settings import ChannelRule, Settings
from realtime.protocol.close import Close, CloseCode
from realtime.session.dispatch import Dispatcher, Reply
from realtime.session.ratelimit import RateLimiter
from tests.helpers.settings import CHANNELS
from tests.helpers.session import FakeApp, FakePeer, decoded, make_app, mint, payload

DISPATCHER = Dispatcher()


@pytest.fixture
def app(make_settings: Callable[..., Settings], tmp_path: Path) -> FakeApp:
    channels = (*CHANNELS, ChannelRule("room:*", subscribe_scope="chat:read", presence=True))
    return make_app(make_settings(channels=channels), tmp_path / "keys")


def connect(app: FakeApp, sub: str = "alice", scope: str = "chat:read chat:write", **kw: Any) -> FakePeer:
    _, claims = mint(app, sub, scope)
    peer = FakePeer(claims, **kw)
    app.hub.connections.add(peer)
    return peer


def send(app: FakeApp, peer: FakePeer, message: dict[str, Any] | str | bytes, now: float = 0.0) -> Reply:
    data = json.dumps(message) if isinstance(message, dict) else message
    reply = DISPATCHER.receive(data, peer, app, now)
    assert isinstance(reply, Reply), "the in-process broker never needs an await"
    return reply


def test_ping_is_answered_with_its_id(app: FakeApp) -> None:
    reply = send(app, connect(app), {"type": "ping", "id": "p1"})
    assert decoded(reply.frames) == [{"type": "pong", "id": "p1"}]
    assert reply.close is None and reply.claims is None
    assert app.metrics.messages_in == 1


def test_subscribe_and_unsubscribe_are_acked_only_when_they_carry_an_id(app: FakeApp) -> None:
    peer = connect(app)
    assert decoded(send(app, peer, {"type": "subscribe", "id": 1, "channel": "chat:a"}).frames) == [
        {"type": "ack", "id": 1}]
    assert send(app, peer, {"type": "unsubscribe", "channel": "chat:a"}).frames == []
    assert decoded(send(app, peer, {"type": "subscribe", "channel": "chat:a", "since": 0}).frames) == [
        {"type": "ack", "recovered": True}]


def test_a_refused_subscribe_is_an_error_and_the_session_goes_on(app: FakeApp) -> None:
    reply = send(app, connect(app, "bob", "chat:read"), {"type": "subscribe", "id": 2, "channel": "news:x"})
    [error] = decoded(reply.frames)
    assert (error["type"], error["id"], error["code"]) == ("error", 2, "forbidden")
    assert reply.close is None


def test_the_replay_follows_the_ack_in_one_reply(app: FakeApp) -> None:
    publisher = connect(app)
    for n in range(3):
        send(app, publisher, {"type": "publish", "channel": "chat:h", "data": n})
    reply = send(app, connect(app, "bob", "chat:read"), {"type": "subscribe", "id": 7, "channel": "chat:h", "since": 1})
    got = decoded(reply.frames)
    assert got[0] == {"type": "ack", "id": 7, "recovered": True}
    assert [(m["seq"], m["data"]) for m in got[1:]] == [(2, 1), (3, 2)]


def test_publish_reaches_subscribers_before_the_publisher_gets_its_ack(app: FakeApp) -> None:
    alice, bob = connect(app), connect(app, "bob", "chat:read")
    send(app, alice, {"type": "subscribe", "channel": "chat:p"})
    send(app, bob, {"type": "subscribe", "channel": "chat:p"})
    reply = send(app, alice, {"type": "publish", "id": "x", "channel": "chat:p", "data": {"hi": 1}})
    assert decoded(reply.frames) == [{"type": "ack", "id": "x", "seq": 1}]
    message = {"type": "message", "channel": "chat:p", "seq": 1, "from": "alice", "data": {"hi": 1}}
    assert decoded(alice.offered) == decoded(bob.offered) == [message]
    assert (app.metrics.publishes, app.metrics.deliveries) == (1, 2)


def test_publish_rate_limit_closes_4008_by_the_time_it_is_given(app: FakeApp) -> None:
    peer = connect(app, publish_rate="2/s")
    publish = {"type": "publish", "channel": "chat:r", "data": 0}
    assert [send(app, peer, publish, now=10.0).close for _ in range(2)] == [None, None]
    assert send(app, peer, publish, now=10.0).close == Close(CloseCode.RATE_LIMITED, "publish rate limit")
    assert send(app, peer, publish, now=10.5).close is None  # half a second: one token back


@pytest.mark.parametrize(
    "data,close",
    [
        (b"\x00binary", Close(CloseCode.UNSUPPORTED_DATA, "binary messages are not accepted")),
        ("{not json", Close(CloseCode.INVALID_DATA, "invalid JSON")),
        ('{"type":"ping","n":NaN}', Close(CloseCode.INVALID_DATA, "invalid JSON")),
    ],
)
def test_what_ends_the_session(app: FakeApp, data: str | bytes, close: Close) -> None:
    reply = send(app, connect(app), data)
    assert reply == Reply(close=close)


def test_a_bad_message_is_answered_not_closed(app: FakeApp) -> None:
    reply = send(app, connect(app), {"type": "subscribe", "id": 3, "channel": "chat:a", "snice": 1})
    [error] = decoded(reply.frames)
    assert (error["id"], error["code"], reply.close) == (3, "bad_message", None)


def test_echo_sends_the_message_back_as_it_came(app: FakeApp) -> None:
    peer = connect(app, echo=True)
    assert payload(send(app, peer, "not even JSON").frames[0]) == b"not even JSON"
    frame = send(app, peer, b"\x01\x02").frames[0]
    assert frame[0] == 0x82 and payload(frame) == b"\x01\x02"  # FIN + binary


def test_refresh_adopts_the_token_reindexes_and_moves_the_deadline(app: FakeApp) -> None:
    peer = connect(app)
    old_jti = peer.jti
    token, claims = mint(app, ttl=600)
    reply = send(app, peer, {"type": "refresh", "id": 9, "token": token})
    assert decoded(reply.frames) == [{"type": "refreshed", "id": 9, "expires_at": claims.exp}]
    assert reply.claims == claims and peer.claims == claims
    assert list(app.hub.connections.by_jti(claims.jti)) == [peer]
    assert list(app.hub.connections.by_jti(old_jti)) == []
    assert app.metrics.refreshes["ok"] == 1


def test_refresh_to_fewer_scopes_drops_the_subscriptions_it_no_longer_allows(app: FakeApp) -> None:
    peer = connect(app, scope="chat:read news:read")
    send(app, peer, {"type": "subscribe", "channel": "news:n"})
    token, _ = mint(app, scope="chat:read")
    got = decoded(send(app, peer, {"type": "refresh", "token": token}).frames)
    assert got[0]["type"] == "refreshed"
    assert got[1:] == [{"type": "error", "code": "subscription_revoked", "message": "token no longer allows news:n"}]


@pytest.mark.parametrize("who", ["bob", "bad"])
def test_a_refused_refresh_keeps_the_old_token(app: FakeApp, who: str) -> None:
    peer = connect(app)
    before = peer.claims
    token = mint(app, sub="bob", scope="chat:read")[0] if who == "bob" else "not.a.jwt"
    reply = send(app, peer, {"type": "refresh", "id": 4, "token": token})
    [error] = decoded(reply.frames)
    assert (error["code"], reply.claims, peer.claims) == ("invalid_token", None, before)
    assert app.metrics.refreshes["error"] == (1 if who == "bad" else 0)


def test_a_refresh_for_a_disabled_user_is_refused(app: FakeApp) -> None:
    peer = connect(app)
    token, _ = mint(app, ttl=600)
    users = {**app.settings.users, "alice": attrs.evolve(app.settings.users["alice"], disabled=True)}
    app.settings = attrs.evolve(app.settings, users=users)
    [error] = decoded(send(app, peer, {"type": "refresh", "token": token}).frames)
    assert (error["code"], error["message"]) == ("invalid_token", "user disabled")


def test_presence_lists_members_with_their_connection_count(app: FakeApp) -> None:
    alice, bob = connect(app), connect(app, "bob", "chat:read")
    for peer in (alice, connect(app), bob):
        send(app, peer, {"type": "subscribe", "channel": "room:1"})
    [answer] = decoded(send(app, bob, {"type": "presence", "id": 5, "channel": "room:1"}).frames)
    assert answer["id"] == 5
    assert sorted((m["sub"], m["connections"]) for m in answer["members"]) == [("alice", 2), ("bob", 1)]
    [error] = decoded(send(app, bob, {"type": "presence", "channel": "chat:1"}).frames)
    assert error["code"] == "presence_disabled"


def test_the_session_core_imports_no_trio() -> None:
    code = ("import sys; import realtime.session.dispatch, realtime.session.clock, realtime.session.ratelimit,"
            " realtime.protocol.close, realtime.protocol.upgrade; assert 'trio' not in sys.modules, 'trio'")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- every message is rate-limited per connection -----------------


def test_any_message_past_message_rate_closes_4008(app: FakeApp) -> None:
    listener = connect(app, "bob")
    send(app, listener, {"type": "subscribe", "channel": "room:1"})
    churner = connect(app, "mallory", "chat:read", message_rate="10/s")
    for i in range(5):
        assert send(app, churner, {"type": "subscribe", "channel": "room:1"}).close is None
        assert send(app, churner, {"type": "unsubscribe", "channel": "room:1"}).close is None
    reply = send(app, churner, {"type": "ping"})
    assert reply.close == Close(CloseCode.RATE_LIMITED, "message rate limit")
    assert reply.frames == []
    # A second later the bucket has refilled.
    assert send(app, churner, {"type": "ping"}, now=1.0).close is None


def test_bad_messages_spend_the_message_bucket_too(app: FakeApp) -> None:
    peer = connect(app, message_rate="3/s")
    for _ in range(3):
        assert send(app, peer, {"type": "nonsense"}).close is None
    assert send(app, peer, {"type": "nonsense"}).close == Close(CloseCode.RATE_LIMITED, "message rate limit")


def test_a_full_resubscription_leaves_room_for_more_messages(app: FakeApp) -> None:
    """The default bucket (``message_rate`` "100/s", ``max_subscriptions``
    100): a reconnecting client resubscribes to all 100 channels and goes
    on talking at once; only a sustained flood is closed."""
    ws = app.settings.websocket
    assert (ws.message_rate, ws.max_subscriptions) == ("100/s", 100)
    peer = connect(app)
    peer.message_limit = RateLimiter.for_messages(ws.message_rate, ws.max_subscriptions)
    for i in range(100):
        reply = send(app, peer, {"type": "subscribe", "id": i, "channel": f"chat:{i}"})
        assert decoded(reply.frames) == [{"type": "ack", "id": i}]
    for i in range(5):
        reply = send(app, peer, {"type": "publish", "id": f"p{i}", "channel": "chat:0", "data": i})
        assert reply.close is None
    assert decoded(send(app, peer, {"type": "ping", "id": "x"}).frames) == [{"type": "pong", "id": "x"}]
    # A flood at the same instant runs the bucket dry and is closed.
    closes = [send(app, peer, {"type": "ping"}).close for _ in range(200)]
    assert Close(CloseCode.RATE_LIMITED, "message rate limit") in closes
    # A flood spread over time at more than the rate is closed too.
    flood = connect(app, "bob")
    flood.message_limit = RateLimiter.for_messages(ws.message_rate, ws.max_subscriptions)
    now, closed = 0.0, None
    for _ in range(10_000):
        now += 1 / 150  # 150 messages a second
        closed = send(app, flood, {"type": "ping"}, now=now).close
        if closed is not None:
            break
    assert closed == Close(CloseCode.RATE_LIMITED, "message rate limit")
    assert now < 5.0  # 200 tokens, 50 a second lost: about 4 s
