"""A single-use take or redemption whose COMMIT is cut by a real PostgreSQL
crash (``pg_ctl stop -m immediate`` at the database layer's
``before_commit`` hook, then a restart).

The transaction never landed, so the call must run again and win exactly
once.  PostgreSQL hands transaction ids out again after a crash: another
node's first transaction may get the lost one's id and commit, so asking
about the id would say "committed" of a take that never happened (and the
login would be taken twice); with no such transaction the id is "in the
future" and asking fails.  The commit marker answers both.
"""

from __future__ import annotations

from typing import Any, Iterator

import psycopg
import pytest

from realtime.store import token_hash
from realtime.store.postgres import PgStore
from realtime.store.provider_logins import PendingRow
from tests.helpers.postgres import PostgresCluster, running_cluster
from tests.helpers.store import NOW, issued

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """A cluster of this module's own: its tests crash it."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def fresh(cluster: PostgresCluster) -> Iterator[tuple[str, PgStore]]:
    """A fresh database on the module's cluster and a store open on it."""
    url = cluster.fresh_database()
    store = PgStore.open(url, pool_size=2, timeout=10)
    try:
        yield url, store
    finally:
        store.close()


def crash_at_commit(cluster: PostgresCluster, url: str, store: PgStore, *, reuse_xid: bool) -> list[str]:
    """Arm the hook: at the next COMMIT the server crashes and restarts; with
    ``reuse_xid`` another client then commits a transaction (taking the
    lost one's id).  The list gets "crashed" once it happened."""
    happened: list[str] = []

    def hook(conn: psycopg.Connection[Any]) -> None:
        store.db.before_commit = None
        cluster.halt()
        cluster.resume()
        happened.append("crashed")
        if reuse_xid:
            with psycopg.connect(url, autocommit=True) as other:
                other.execute("BEGIN; SELECT pg_current_xact_id();"
                              " INSERT INTO meta(key, value) VALUES ('other node', 'x'); COMMIT")

    store.db.before_commit = hook
    return happened


def pending(store: PgStore) -> None:
    store.add_provider_login(PendingRow(state_hash="s-1", provider="corp", binding="b" * 64, address="192.0.2.1",
                                        sealed="x", created_at=NOW, expires_at=NOW + 600),
                             now=NOW, per_address=10, total=100)


def code(store: PgStore) -> None:
    store.save_code(token_hash("code"), client_id="app", redirect_uri=None, code_challenge=None,
                    sub="alice", scope={"chat:read"}, expires_at=NOW + 60)


@pytest.mark.parametrize("reuse_xid", [True, False], ids=["xid-reused", "xid-in-the-future"])
def test_a_take_cut_by_a_crash_at_commit_runs_again_and_wins_once(
        cluster: PostgresCluster, fresh: tuple[str, PgStore], reuse_xid: bool) -> None:
    url, store = fresh
    pending(store)
    happened = crash_at_commit(cluster, url, store, reuse_xid=reuse_xid)
    first = store.take_provider_login("s-1", NOW)
    assert happened == ["crashed"]
    assert first is not None and first.provider == "corp"  # the retried take landed ...
    assert store.take_provider_login("s-1", NOW) is None  # ... once: no second winner
    assert store.provider_logins_count() == 0


@pytest.mark.parametrize("reuse_xid", [True, False], ids=["xid-reused", "xid-in-the-future"])
def test_a_code_redemption_cut_by_a_crash_at_commit_issues_once(
        cluster: PostgresCluster, fresh: tuple[str, PgStore], reuse_xid: bool) -> None:
    url, store = fresh
    code(store)
    happened = crash_at_commit(cluster, url, store, reuse_xid=reuse_xid)
    assert store.redeem_code(token_hash("code"), NOW, issued("a1", refresh="r1")) is True
    assert happened == ["crashed"]
    assert store.redeem_code(token_hash("code"), NOW, issued("a2", refresh="r2")) is False
    assert store.counts()["families"] == 1 and store.counts()["refresh_tokens"] == 1
    assert store.db.read_one("SELECT access_jti FROM codes") == ("a1",)


def test_a_commit_that_landed_before_the_crash_is_not_run_again(
        cluster: PostgresCluster, fresh: tuple[str, PgStore]) -> None:
    """The other side: COMMIT durable, then the crash takes the answer."""
    _, store = fresh
    pending(store)

    def hook(conn: psycopg.Connection[Any]) -> None:
        store.db.before_commit = None
        conn.execute("COMMIT")
        cluster.halt()
        cluster.resume()

    store.db.before_commit = hook
    first = store.take_provider_login("s-1", NOW)
    assert first is not None and first.provider == "corp"
    assert store.take_provider_login("s-1", NOW) is None


def test_old_commit_markers_are_swept_and_recent_ones_kept(fresh: tuple[str, PgStore]) -> None:
    url, store = fresh
    code(store)  # one write: one marker
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO commit_markers(marker, written_at) VALUES ('old', now() - interval '2 hours')")
        store.sweep(NOW)
        left = conn.execute("SELECT marker FROM commit_markers").fetchall()
    assert len(left) >= 1 and ("old",) not in left
