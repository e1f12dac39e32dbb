"""``kill -9`` of a PostgreSQL node mid-burst loses no answered grant.

A server process on a PostgreSQL database answers a bounded burst from
loopback loops: client_credentials grants, code exchanges (codes written
into the store beforehand) and refresh rotations along chains.  It is
SIGKILLed while requests are in flight; a second node (a process of its
own, its own state dir, the same database and key file) then honours
everything the first one answered: each access token introspects active,
each refresh token that was answered and not sent again refreshes
exactly once, and each answered code is spent."""

from __future__ import annotations

import json
import secrets
import signal
import time
from pathlib import Path

import httpx
import pytest
import trio

from realtime.store import token_hash
from realtime.store.postgres import PgStore
from tests.helpers.oauth import CHEAP
from tests.helpers.postgres import write_store_key
from tests.helpers.server import ServerProcess, server_config

pytestmark = pytest.mark.timeout(180)

SECRET = "pg-crash-secret-" + "q" * 20
AUTH = ("svc", SECRET)
CB = "http://127.0.0.1/cb"
CHAINS = 6  # refresh chains; even ones go quiet early, odd ones are in flight at the kill
CODE_LOOPS = 2
CC_LOOPS = 2
CODES = 400  # written beforehand: more than the code loops can spend before the kill
ENOUGH = 150  # answers before the kill


def write_node(root: Path, name: str, url: str, key_file: Path) -> Path:
    conf = root / name
    conf.mkdir()
    (conf / "realtime.toml").write_text(
        server_config() + f'\n[store]\nurl = "{url}"\nkey_file = "{key_file}"\n')
    (conf / "apps.toml").write_text(
        '[[app]]\nname = "Service"\nclient_id = "svc"\n'
        f'client_secret_hash = "{CHEAP.hash(SECRET)}"\n'
        f'redirect_uris = ["{CB}"]\n'
        'grant_types = ["authorization_code", "refresh_token", "client_credentials"]\n'
        'scopes = ["chat:read"]\n')
    (conf / "users.json").write_text(json.dumps({"users": [{"name": "alice", "scopes": ["chat:read"]}]}))
    return conf / "realtime.toml"


def write_codes(url: str, count: int) -> list[str]:
    store = PgStore.open(url, pool_size=1)
    try:
        codes = [secrets.token_urlsafe(32) for _ in range(count)]
        for code in codes:
            store.save_code(token_hash(code), client_id="svc", redirect_uri=CB, code_challenge=None, sub="alice",
                            scope=["chat:read"], expires_at=time.time() + 600)
        return codes
    finally:
        store.close()


class Burst:
    """What the loops sent and what the first node answered."""

    def __init__(self, codes: list[str]) -> None:
        self.codes = codes
        self.access: list[str] = []  # every access token answered
        self.spent_codes: list[str] = []  # codes whose exchange was answered
        self.latest: dict[int, str] = {}  # chain -> its last answered refresh token
        self.in_flight: dict[int, str] = {}  # chain -> the token sent, answer not read
        self.code_refresh: list[str] = []  # refresh tokens of answered code exchanges (never sent again)
        self.answers = 0
        self.enough = trio.Event()

    def answered(self) -> None:
        self.answers += 1
        if self.answers >= ENOUGH:
            self.enough.set()


async def post(http: httpx.AsyncClient, data: dict[str, str]) -> dict[str, str] | None:
    """One grant; None when the node died with it in flight."""
    try:
        resp = await http.post("/oauth2/token", auth=AUTH, data=data)
    except httpx.TransportError:
        return None
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def chain(http: httpx.AsyncClient, burst: Burst, number: int) -> None:
    got = await post(http, {"grant_type": "authorization_code", "code": burst.codes.pop(), "redirect_uri": CB})
    if got is None:
        return
    burst.access.append(got["access_token"])
    burst.latest[number] = got["refresh_token"]
    rounds = 0
    while number % 2 or rounds < 5:
        rounds += 1
        token = burst.in_flight[number] = burst.latest[number]
        got = await post(http, {"grant_type": "refresh_token", "refresh_token": token})
        if got is None:
            return
        del burst.in_flight[number]
        burst.access.append(got["access_token"])
        burst.latest[number] = got["refresh_token"]
        burst.answered()


async def exchanges(http: httpx.AsyncClient, burst: Burst) -> None:
    while burst.codes:
        code = burst.codes.pop()
        got = await post(http, {"grant_type": "authorization_code", "code": code, "redirect_uri": CB})
        if got is None:
            return
        burst.spent_codes.append(code)
        burst.access.append(got["access_token"])
        burst.code_refresh.append(got["refresh_token"])
        burst.answered()


async def client_credentials(http: httpx.AsyncClient, burst: Burst) -> None:
    while True:
        got = await post(http, {"grant_type": "client_credentials", "scope": "chat:read"})
        if got is None:
            return
        burst.access.append(got["access_token"])
        burst.answered()


async def test_kill_9_mid_burst_loses_no_answered_grant_on_the_shared_store(
        tmp_path: Path, nursery: trio.Nursery, pg_url: str) -> None:
    key_file = write_store_key(tmp_path)
    first_conf = write_node(tmp_path, "a", pg_url, key_file)
    second_conf = write_node(tmp_path, "b", pg_url, key_file)
    burst = Burst(await trio.to_thread.run_sync(write_codes, pg_url, CODES))

    first, bound = await ServerProcess.start(nursery, ["serve", "-c", str(first_conf)], tmp_path / "a")
    limits = httpx.Limits(max_connections=CHAINS + CODE_LOOPS + CC_LOOPS)
    async with httpx.AsyncClient(base_url=f"http://{bound['http']}", timeout=30, limits=limits) as http:
        with trio.fail_after(90):
            async with trio.open_nursery() as loops:
                for number in range(CHAINS):
                    loops.start_soon(chain, http, burst, number)
                for _ in range(CODE_LOOPS):
                    loops.start_soon(exchanges, http, burst)
                for _ in range(CC_LOOPS):
                    loops.start_soon(client_credentials, http, burst)
                await burst.enough.wait()
                first.proc.send_signal(signal.SIGKILL)  # the loops end on their connection errors
                await first.proc.wait()
    assert burst.answers >= ENOUGH and burst.spent_codes and burst.code_refresh

    second, bound = await ServerProcess.start(nursery, ["serve", "-c", str(second_conf)], tmp_path / "b")
    try:
        async with httpx.AsyncClient(base_url=f"http://{bound['http']}", timeout=30) as http:
            for access in burst.access:  # signed with the store's key, revoked nowhere
                info = await http.post("/oauth2/introspect", auth=AUTH, data={"token": access})
                assert info.status_code == 200 and info.json()["active"] is True, info.text
            unsent = [t for n, t in burst.latest.items() if burst.in_flight.get(n) != t] + burst.code_refresh
            assert len(unsent) >= CHAINS // 2
            for token in unsent:
                once = await http.post("/oauth2/token", auth=AUTH, data={
                    "grant_type": "refresh_token", "refresh_token": token})
                assert once.status_code == 200, once.text
                again = await http.post("/oauth2/token", auth=AUTH, data={
                    "grant_type": "refresh_token", "refresh_token": token})
                assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
            for code in burst.spent_codes:  # answered, so spent: another exchange is a replay
                again = await http.post("/oauth2/token", auth=AUTH, data={
                    "grant_type": "authorization_code", "code": code, "redirect_uri": CB})
                assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    finally:
        second.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await second.proc.wait()
