"""Presence in the hub without sockets (issue 12): members, join and leave,
the member cap, several connections per ``sub``, and what the hub does
with a remote broker (reports counts, delivers join/leave once, never
announces by itself)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from realtime.config.settings import WebSocketSettings
from realtime.hub import Hub, HubError
from realtime.hub.broker import BrokerUnavailable, Replay
from realtime.protocol import replies
from realtime.protocol.frames import encode_text_frame
from tests.helpers.hub import RULES, FakeConn, FakeRemote, make_hub


def test_presence_cap_truncates_without_walking_everyone() -> None:
    hub = make_hub(max_presence_members=3, max_subscriptions=1)
    conns = [FakeConn(f"user{i}") for i in range(10)]
    for conn in conns:
        hub.subscribe(conn, "room:1")
    members, truncated = hub.presence_page("room:1", sub="user0", scopes=conns[0].scopes)
    assert truncated and members == [("user0", 1), ("user1", 1), ("user2", 1)]
    assert hub.presence("room:1", sub="user0", scopes=conns[0].scopes) == members
    for conn in conns[3:]:
        hub.drop(conn)
    assert hub.presence_page("room:1", sub="user0", scopes=conns[0].scopes) == (
        [("user0", 1), ("user1", 1), ("user2", 1)], False)


def test_three_tabs_are_one_member_and_leave_with_the_last() -> None:
    hub = make_hub()
    tabs = [FakeConn("alice") for _ in range(3)]
    bob = FakeConn("bob")
    hub.subscribe(bob, "room:1")
    for tab in tabs:
        hub.subscribe(tab, "room:1")
    assert bob.take() == [{"type": "join", "channel": "room:1", "sub": "alice"}]
    assert hub.presence("room:1", sub="bob", scopes=bob.scopes) == [("bob", 1), ("alice", 3)]
    hub.unsubscribe(tabs[0], "room:1")
    hub.drop(tabs[1])
    assert bob.take() == []
    assert hub.presence("room:1", sub="bob", scopes=bob.scopes) == [("bob", 1), ("alice", 1)]
    hub.drop(tabs[2])
    assert bob.take() == [{"type": "leave", "channel": "room:1", "sub": "alice"}]


def test_presence_answer_shape_with_truncated() -> None:
    body = replies.presence("room:1", [("a", 2, "A"), ("b", 1, None)], 7, truncated=True)
    assert replies.encode_json({}) == b"{}"
    assert json.loads(body) == {"type": "presence", "channel": "room:1", "id": 7, "truncated": True,
                                "members": [{"sub": "a", "connections": 2, "display_name": "A"},
                                            {"sub": "b", "connections": 1}]}


async def test_remote_mode_reports_and_does_not_announce() -> None:
    broker = FakeRemote()
    hub = Hub(RULES, WebSocketSettings(), broker)  # type: ignore[arg-type]
    assert hub.remote and broker.hub is hub
    a1, a2, b = FakeConn("alice"), FakeConn("alice"), FakeConn("bob")
    for conn in (b, a1, a2):
        result = await hub.subscribe_async(conn, "room:1")
        assert result.seq == 7
    assert broker.holds == {"room:1": 0} and broker.watched == {"room:1"}
    assert b.take() == []  # no local join: the broker sends joins for every node
    assert broker.reports == [("room:1", "bob"), ("room:1", "alice"), ("room:1", "alice")]
    # Each count went to the broker before the subscribe was answered.
    assert broker.early == [("room:1", "bob", 1, 1), ("room:1", "alice", 1, 2), ("room:1", "alice", 2, 3)]
    assert hub.local_counts("room:1", "alice") == (2, 3)
    # A join from the broker reaches everyone but alice's own connections.
    frame = encode_text_frame(replies.join("room:1", "alice"))
    assert hub.deliver_event("room:1", frame, "alice") == 1
    assert b.take() == [{"type": "join", "channel": "room:1", "sub": "alice"}] and a1.take() == []
    hub.drop(a1)
    hub.drop(a2)
    assert b.take() == [] and broker.reports[-1] == ("room:1", "alice")
    assert (await hub.publish_async("room:1", {"x": 1}, from_sub="bob", scopes=b.scopes)).seq == 8
    assert await hub.presence_async("room:1", sub="bob", scopes=b.scopes) == ([("x", 1)], False)
    hub.drop(b)
    assert broker.watched == set()

    broker.down = True
    with pytest.raises(HubError) as info:
        await hub.publish_async("room:1", 1, from_sub="bob", scopes=b.scopes)
    assert info.value.code == "unavailable"
    with pytest.raises(HubError) as info:
        await hub.subscribe_async(FakeConn("carol"), "room:1")
    assert info.value.code == "unavailable"
    assert broker.holds["room:1"] == 0


# -- presence --------------------------------------------------------------------


def test_presence_and_join_leave() -> None:
    hub = make_hub()
    a1, a2 = FakeConn("alice"), FakeConn("alice")
    b = FakeConn("bob")
    hub.subscribe(a1, "room:1")
    assert a1.take() == []  # no join to oneself
    hub.subscribe(b, "room:1")
    assert a1.take() == [{"type": "join", "channel": "room:1", "sub": "bob"}]
    assert b.take() == []
    hub.subscribe(a2, "room:1")  # alice's second connection: no join
    assert a1.take() == [] and b.take() == []
    members = hub.presence("room:1", sub="bob", scopes=b.scopes)
    assert members == [("alice", 2), ("bob", 1)]
    hub.unsubscribe(a1, "room:1")  # alice still has a2
    assert b.take() == []
    hub.drop(a2)
    assert b.take() == [{"type": "leave", "channel": "room:1", "sub": "alice"}]
    assert hub.presence("room:1", sub="bob", scopes=b.scopes) == [("bob", 1)]
    hub.drop(b)
    assert hub.presence("room:1", sub="bob", scopes=b.scopes) == []


def test_presence_needs_scope_and_flag() -> None:
    hub = make_hub()
    with pytest.raises(HubError) as info:
        hub.presence("room:1", sub="x", scopes=frozenset())
    assert info.value.code == "forbidden"
    with pytest.raises(HubError) as info:
        hub.presence("chat:1", sub="x", scopes=frozenset({"chat:read"}))
    assert info.value.code == "presence_disabled"
    with pytest.raises(HubError) as info:
        hub.presence("nope", sub="x", scopes=frozenset())
    assert info.value.code == "unknown_channel"


def test_leave_on_revalidate() -> None:
    hub = make_hub()
    a, b = FakeConn("alice"), FakeConn("bob")
    hub.subscribe(a, "room:1")
    hub.subscribe(b, "room:1")
    b.take()
    a.take()
    a.scopes = frozenset()
    hub.revalidate(a)
    assert b.take() == [{"type": "leave", "channel": "room:1", "sub": "alice"}]


def test_joins_and_leaves_are_not_numbered() -> None:
    hub = make_hub()
    a, b = FakeConn("alice"), FakeConn("bob")
    hub.subscribe(a, "room:1")
    hub.subscribe(b, "room:1")
    assert hub.publish("room:1", "x", from_sub="a", scopes=a.scopes).seq == 1
    r = hub.subscribe(FakeConn("carol"), "room:1", since=0)
    assert len(r.replay) == 1
