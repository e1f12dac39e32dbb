"""The connection index: lookups by ``sub``, ``client_id``, ``kid``, ``jti``."""

from __future__ import annotations

from realtime.hub.index import ConnectionIndex
from tests.helpers.hub import FakeConn


# -- the connection index -----------------------------------------------------------


def test_connection_index() -> None:
    index = ConnectionIndex()
    a = FakeConn("alice", client_id="app1", kid="k1", jti="j1")
    b = FakeConn("alice", client_id="app2", kid="k2", jti="j2")
    c = FakeConn("bob", client_id="app1", kid="k1", jti="j3")
    for conn in (a, b, c):
        index.add(conn)
    index.add(a)  # twice: harmless
    assert len(index) == 3
    assert set(index.by_sub("alice")) == {a, b}
    assert set(index.by_client("app1")) == {a, c}
    assert set(index.by_kid("k1")) == {a, c}
    assert index.by_jti("j2") == (b,)
    assert index.by_jti("nope") == () and index.by_sub("nope") == ()
    assert set(index.kids()) == {"k1", "k2"}
    # An in-band refresh: new jti and kid.
    old = (a.sub, a.client_id, a.kid, a.jti)
    a.kid, a.jti = "k3", "j9"
    index.reindex(a, *old)
    assert index.by_jti("j1") == () and index.by_jti("j9") == (a,)
    assert index.by_kid("k1") == (c,) and index.by_kid("k3") == (a,)
    index.remove(a)
    index.remove(a)
    assert index.by_kid("k3") == () and set(index.by_sub("alice")) == {b}
    assert a not in index and len(index) == 2
    assert set(index.all()) == {b, c}
    # Removal uses the keys it was filed under, even if fields moved on.
    b.jti = "changed"
    index.remove(b)
    assert index.by_jti("j2") == () and index.by_jti("changed") == ()
    assert set(index.subs()) == {"bob"} and set(index.client_ids()) == {"app1"}


def test_index_lookups_are_snapshots() -> None:
    index = ConnectionIndex()
    conns = [FakeConn("alice", jti="same") for _ in range(5)]
    for conn in conns:
        index.add(conn)
    for conn in index.by_jti("same"):
        index.remove(conn)  # removing while walking the result is fine
    assert len(index) == 0
