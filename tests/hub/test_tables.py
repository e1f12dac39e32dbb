"""The subscription tables on their own: the fan-out snapshot every
delivery path shares, member counts, and the two tables kept in step."""

from __future__ import annotations

from realtime.hub.tables import Channel, Tables
from tests.helpers.hub import FakeConn


def test_fanout_snapshot_is_reused_until_the_channel_changes() -> None:
    ch = Channel("chat:x")
    a, b = FakeConn("a"), FakeConn("b")
    ch.add(a)
    first = ch.fanout()
    assert first == (a,)
    assert ch.fanout() is first  # a publish allocates nothing per subscriber
    ch.add(b)
    second = ch.fanout()
    assert second == (a, b) and second is not first
    assert ch.remove(a.conn_id) == ("a", 0)
    assert ch.fanout() == (b,)


def test_fanout_snapshot_survives_removal_while_walked() -> None:
    """A session may drop itself (or another) from inside offer(): the
    walk in progress still sees the tuple it started with."""
    ch = Channel("chat:x")
    conns = [FakeConn(f"s{i}") for i in range(4)]
    for conn in conns:
        ch.add(conn)
    walked = []
    for conn in ch.fanout():
        walked.append(conn)
        ch.remove(conns[-1].conn_id)
    assert walked == conns
    assert ch.fanout() == tuple(conns[:-1])


def test_member_counts_and_page() -> None:
    ch = Channel("room:1")
    tabs = [FakeConn("alice") for _ in range(3)]
    assert [ch.add(tab) for tab in tabs] == [0, 1, 2]  # alice's connections before each
    for i in range(5):
        ch.add(FakeConn(f"u{i}"))
    assert ch.members_page(10) == ([("alice", 3)] + [(f"u{i}", 1) for i in range(5)], False)
    assert ch.members_page(2) == ([("alice", 3), ("u0", 1)], True)
    assert ch.remove(tabs[0].conn_id) == ("alice", 2)
    assert ch.remove(tabs[0].conn_id) is None  # not there any more
    ch.remove(tabs[1].conn_id)
    assert ch.remove(tabs[2].conn_id) == ("alice", 0)
    assert "alice" not in ch.members


def test_tables_keep_both_sides_in_step() -> None:
    tables = Tables()
    a, b = FakeConn("a"), FakeConn("b")
    ch, before, created = tables.add(a, "chat:x")
    assert (ch.name, before, created) == ("chat:x", 0, True)
    assert tables.add(b, "chat:x")[2] is False
    tables.add(a, "chat:y")
    assert list(tables.channels_of(a)) == ["chat:x", "chat:y"]
    assert tables.counts("chat:x", "a") == (1, 2) and tables.counts("nope", "a") == (0, 0)
    assert tables.subscription_count() == 3

    assert tables.forget(a, "chat:x") and not tables.forget(a, "chat:x")
    detached = tables.detach("chat:x", a.conn_id)
    assert detached is not None and detached[1:] == ("a", 0)
    assert tables.detach("chat:x", a.conn_id) is None

    assert tables.forget_all(a) == ("chat:y",) and tables.forget_all(a) == ()
    gone = tables.detach("chat:y", a.conn_id)
    assert gone is not None and "chat:y" not in tables.channels  # nobody left: freed
    assert tables.channels_of(a) == {} and tables.subscription_count() == 1
