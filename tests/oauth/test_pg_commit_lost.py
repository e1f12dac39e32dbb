"""A code exchange whose connection breaks during COMMIT (a real PostgreSQL;
the break made by ``pg_terminate_backend`` from another connection, or by
stopping the server, through the database layer's ``before_commit`` hook).

The node asks PostgreSQL (``pg_xact_status``) what became of its
transaction instead of guessing: a COMMIT that landed answers the tokens
it wrote, one that did not is run again, and when the database cannot be
asked the answer is 503, never ``invalid_grant`` with the family revoked.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import httpx
import psycopg
import pytest
import trio

from tests.helpers.oidc import OIDC_SECRET, RP_CB, Browser, oidc_settings
from tests.helpers.postgres import PostgresCluster, pg_node_settings, write_store_key

pytestmark = pytest.mark.timeout(120)


def terminate(url: str, pid: int) -> None:
    """End backend ``pid`` and return once it is gone."""
    with psycopg.connect(url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone()[0]


async def exchange(http: httpx.AsyncClient, code: str) -> httpx.Response:
    return await http.post("/oauth2/token", auth=("rp", OIDC_SECRET), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": RP_CB})


async def start_node(start_server: Callable[..., Any], make_settings: Callable[..., Any], url: str,
                     tmp_path: Path) -> Any:
    base = oidc_settings(make_settings())
    return await start_server(pg_node_settings(base, url, write_store_key(tmp_path), tmp_path / "a"))


def once(db: Any, action: Callable[[psycopg.Connection[Any]], None]) -> list[int]:
    """Arm the hook for the next COMMIT only; the list gets the backend pid it broke."""
    broke: list[int] = []

    def hook(conn: psycopg.Connection[Any]) -> None:
        db.before_commit = None
        broke.append(conn.info.backend_pid)
        action(conn)

    db.before_commit = hook
    return broke


async def test_a_commit_that_landed_but_lost_its_answer_answers_the_tokens(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], pg_url: str, tmp_path: Path) -> None:
    node = await start_node(start_server, make_settings, pg_url, tmp_path)
    db = node.state.store.sync.db

    def commit_then_break(conn: psycopg.Connection[Any]) -> None:
        conn.execute("COMMIT")  # the transaction lands ...
        terminate(pg_url, conn.info.backend_pid)  # ... and the answer to the node's own COMMIT is lost

    async with httpx.AsyncClient(base_url=node.url("")) as http:
        code = (await Browser(http, "").code(scope="openid chat:read offline_access"))["code"]
        broke = once(db, commit_then_break)
        answer = await exchange(http, code)
        assert broke, "the hook never ran"
        assert answer.status_code == 200, answer.text
        tokens = answer.json()
        # What was answered is what landed: the refresh token works, once.
        first = await http.post("/oauth2/token", auth=("rp", OIDC_SECRET), data={
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
        assert first.status_code == 200, first.text
        # And the code is used: a real second exchange is still a replay.
        assert (await exchange(http, code)).status_code == 400


async def test_a_commit_that_did_not_land_is_run_again(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], pg_url: str, tmp_path: Path) -> None:
    node = await start_node(start_server, make_settings, pg_url, tmp_path)
    db = node.state.store.sync.db
    async with httpx.AsyncClient(base_url=node.url("")) as http:
        code = (await Browser(http, "").code(scope="openid chat:read offline_access"))["code"]
        broke = once(db, lambda conn: terminate(pg_url, conn.info.backend_pid))  # before COMMIT reaches it
        answer = await exchange(http, code)
        assert broke and answer.status_code == 200, answer.text
        first = await http.post("/oauth2/token", auth=("rp", OIDC_SECRET), data={
            "grant_type": "refresh_token", "refresh_token": answer.json()["refresh_token"]})
        assert first.status_code == 200, first.text


async def test_a_commit_whose_outcome_cannot_be_asked_answers_503_not_invalid_grant(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], own_cluster: PostgresCluster,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The database stops right after the transaction landed: the node cannot
    know, so it answers 503 (the client's retry, once the database is back,
    is then taken for a replay: that part remains, see the README)."""
    node = await start_node(start_server, make_settings, own_cluster.fresh_database(), tmp_path)
    db = node.state.store.sync.db

    def commit_then_stop(conn: psycopg.Connection[Any]) -> None:
        conn.execute("COMMIT")
        own_cluster.halt()

    async with httpx.AsyncClient(base_url=node.url(""), timeout=30) as http:
        code = (await Browser(http, "").code(scope="openid chat:read offline_access"))["code"]
        broke = once(db, commit_then_stop)
        caplog.clear()
        with trio.fail_after(30):
            answer = await exchange(http, code)
        assert broke and answer.status_code == 503, answer.text
        assert answer.json()["error"] == "temporarily_unavailable"
        assert any("whether the transaction landed is unknown" in r.getMessage() and r.levelno == logging.ERROR
                   for r in caplog.records)
        await trio.to_thread.run_sync(own_cluster.resume)
