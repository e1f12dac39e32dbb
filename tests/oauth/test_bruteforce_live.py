"""Through a real server: the login throttle under concurrent guesses
 and the limits on unauthenticated argon2 work (M2): the
client-authentication throttle, no hash for an unknown ``client_id``,
separate argon2 limiters for logins and clients, and the bounded wait
queue answering 503.

Counting argon2 checks: the server's hasher offloads are wrapped so each
check first waits for the test's go-ahead.  The test sends every request
at once, waits until each one has either reached a check or been
answered, then lets the checks run: what got checked is then decided by
the code, not by how fast threads happen to be.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import attrs
import httpx
import pytest
import trio
import trio.testing

from realtime.config.fields import ConfigError
from realtime.config.load import load_settings
from realtime.net.workers import thread_offload
from realtime.oauth.offload import OffloadBusy
from realtime.oauth.passwords import Hasher
from tests.helpers.oauth import PASSWORDS, PW_SECRET, SVC_SECRET, WEB_CB, build_settings, hidden
from tests.helpers.server import Running, write_conf


@attrs.define(eq=False)
class Gate:
    """An offload wrapper: counts the calls and holds each one until opened."""

    inner: Any
    entered: int = 0
    opened: trio.Event = attrs.field(factory=trio.Event)
    progress: list[trio.Event] = attrs.field(factory=lambda: [trio.Event()])

    def poke(self) -> None:
        self.progress[0].set()
        self.progress[0] = trio.Event()

    async def __call__(self, fn: Callable[[], Any]) -> Any:
        self.entered += 1
        self.poke()
        await self.opened.wait()
        return await self.inner(fn)

    async def until(self, done: Callable[[], bool]) -> None:
        with trio.fail_after(10):
            while not done():
                await self.progress[0].wait()


@pytest.fixture
async def make_server(start_server: Callable[..., Any], make_settings: Callable[..., Any],
                      hashes: dict[str, str], tmp_path: Path) -> Callable[..., Any]:
    async def make(**oauth: Any) -> Running:
        mine = build_settings(tmp_path, hashes, time.time())
        return await start_server(make_settings(apps=mine.apps, users=mine.users,
                                                oauth={"signing_alg": "ES256", **oauth}))
    return make


def gate_logins(running: Running) -> Gate:
    services = running.state.oauth
    gate = Gate(services.hasher.offload)
    services.hasher = Hasher(gate)
    return gate


def gate_clients(running: Running, inner: Any = None) -> Gate:
    services = running.state.oauth
    gate = Gate(inner or services.secret_hasher.offload)
    services.client_hasher = Hasher(gate)
    return gate


async def login_form(http: httpx.AsyncClient) -> dict[str, str]:
    resp = await http.get("/oauth2/authorize", params={
        "response_type": "code", "client_id": "web", "redirect_uri": WEB_CB,
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256",
    })
    assert resp.status_code == 200
    return hidden(resp.text)


async def send_all(count: int, request: Callable[[], Any], gate: Gate) -> list[httpx.Response]:
    """Send ``count`` requests at once; open the gate when each has either
    reached an argon2 check or been answered; all the answers."""
    answers: list[httpx.Response] = []
    base = gate.entered

    async def one() -> None:
        answers.append(await request())
        gate.poke()

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
        await gate.until(lambda: gate.entered - base + len(answers) >= count)
        gate.opened.set()
    return answers


# -- M1: concurrent guesses ----------------------------------------------------


async def test_concurrent_login_guesses_spend_the_bucket_before_hashing(make_server: Callable[..., Any]) -> None:
    running = await make_server(login_rate="3/m")
    gate = gate_logins(running)
    async with httpx.AsyncClient(base_url=running.url("")) as http:
        form = await login_form(http)
        wrong = form | {"username": "alice", "password": "wrong"}
        answers = await send_all(12, lambda: http.post("/oauth2/authorize", data=wrong), gate)
        statuses = sorted(r.status_code for r in answers)
        assert gate.entered <= 3, statuses  # at most login_rate's burst checked
        assert statuses == [400] * gate.entered + [429] * (12 - gate.entered)
        assert all(int(r.headers["retry-after"]) >= 1 for r in answers if r.status_code == 429)
        # The bucket is still empty: the right password waits for the refill.
        resp = await http.post("/oauth2/authorize", data=form | {"username": "alice", "password": PASSWORDS["alice"]})
        assert resp.status_code == 429 and "retry-after" in resp.headers
        assert gate.entered <= 3


async def test_concurrent_password_grant_guesses(make_server: Callable[..., Any]) -> None:
    running = await make_server(login_rate="3/m")
    gate = gate_logins(running)
    # The client's own secret is checked once, then cached.
    gate.opened.set()
    async with httpx.AsyncClient(base_url=running.url("")) as http:
        warm = await http.post("/oauth2/token", auth=("pw", PW_SECRET),
                               data={"grant_type": "password", "username": "bob", "password": PASSWORDS["bob"]})
        assert warm.status_code == 200
        before = gate.entered
        guess = {"grant_type": "password", "username": "alice", "password": "wrong"}
        gate.opened = trio.Event()
        answers = await send_all(
            12, lambda: http.post("/oauth2/token", auth=("pw", PW_SECRET), data=guess), gate)
        checked = gate.entered - before
        assert checked <= 3
        assert sorted(r.status_code for r in answers) == [400] * checked + [429] * (12 - checked)
        assert {r.json()["error"] for r in answers} == {"invalid_grant"}
        resp = await http.post("/oauth2/token", auth=("pw", PW_SECRET),
                               data={"grant_type": "password", "username": "alice", "password": PASSWORDS["alice"]})
        assert resp.status_code == 429 and "retry-after" in resp.headers


# -- M2: client authentication -------------------------------------------------


async def test_failed_client_authentication_is_throttled_before_hashing(make_server: Callable[..., Any]) -> None:
    running = await make_server(client_auth_rate="3/m")
    gate = gate_clients(running)
    gate.opened.set()
    async with httpx.AsyncClient(base_url=running.url("")) as http:
        data = {"grant_type": "client_credentials"}
        statuses = [(await http.post("/oauth2/token", data=data, auth=("svc", "bogus"))).status_code
                    for _ in range(3)]
        assert statuses == [401, 401, 401] and gate.entered == 3
        for path in ("/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"):
            resp = await http.post(path, data={**data, "token": "x"}, auth=("svc", "bogus"))
            assert resp.status_code == 429 and int(resp.headers["retry-after"]) >= 1
            assert resp.json()["error"] == "invalid_client"
        assert gate.entered == 3  # refused before any hash
        # The per-address bucket is empty too: another client from here waits.
        resp = await http.post("/oauth2/token", data=data, auth=("pw", "bogus"))
        assert resp.status_code == 429


async def test_wrong_secrets_from_one_address_do_not_lock_the_client_out(make_server: Callable[..., Any]) -> None:
    running = await make_server(client_auth_rate="3/m")
    gate = gate_clients(running)
    gate.opened.set()
    data = {"grant_type": "client_credentials"}
    async with httpx.AsyncClient(base_url=running.url("")) as http:
        statuses = [(await http.post("/oauth2/token", data=data, auth=("svc", "bogus"))).status_code
                    for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        # The right secret from the guessing address waits too...
        resp = await http.post("/oauth2/token", data=data, auth=("svc", SVC_SECRET))
        assert resp.status_code == 429
    # ...but the real client, from another address, still authenticates.
    other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=running.url(""), transport=other) as http:
        for path in ("/oauth2/token", "/oauth2/introspect"):
            resp = await http.post(path, data={**data, "token": "x"}, auth=("svc", SVC_SECRET))
            assert resp.status_code == 200, resp.text
    assert gate.entered == 4


async def test_unknown_client_id_is_refused_without_a_hash(make_server: Callable[..., Any]) -> None:
    running = await make_server()
    gate = gate_clients(running)
    gate.opened.set()
    async with httpx.AsyncClient(base_url=running.url("")) as http:
        for path in ("/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"):
            resp = await http.post(path, data={"grant_type": "client_credentials", "token": "x"},
                                   auth=("no-such-client", "whatever"))
            assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
            assert resp.headers["www-authenticate"].startswith("Basic")
        # A public app has no secret to check either.
        resp = await http.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=("spa", "x"))
        assert resp.status_code == 401
        assert gate.entered == 0
        resp = await http.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=("svc", SVC_SECRET))
        assert resp.status_code == 200 and gate.entered == 1


async def test_full_client_queue_answers_503_and_logins_still_go_through(make_server: Callable[..., Any]) -> None:
    running = await make_server(client_auth_rate="1000/m", hash_queue=2)
    # The server's own wiring: a clients' offload of one thread and a wait
    # queue of hash_queue.  Each check blocks in its thread until released.
    services = running.state.oauth
    assert services.client_hasher is not None and services.client_hasher is not services.hasher
    release = threading.Event()
    real = services.client_hasher.offload

    async def blocked(fn: Callable[[], Any]) -> Any:
        return await real(lambda: (release.wait(10), fn())[1])

    gate = gate_clients(running, blocked)
    gate.opened.set()
    data = {"grant_type": "client_credentials"}
    async with httpx.AsyncClient(base_url=running.url(""), timeout=20) as http:
        stuck: list[httpx.Response] = []

        async def bogus() -> None:
            stuck.append(await http.post("/oauth2/token", data=data, auth=("svc", "bogus")))
            gate.poke()

        async with trio.open_nursery() as nursery:
            for _ in range(3):  # one running, hash_queue (2) waiting
                nursery.start_soon(bogus)
            await gate.until(lambda: gate.entered == 3)
            resp = await http.post("/oauth2/token", data=data, auth=("svc", "bogus"))
            assert resp.status_code == 503 and int(resp.headers["retry-after"]) >= 1
            assert resp.json()["error"] == "temporarily_unavailable"
            assert resp.headers["cache-control"] == "no-store"
            # User logins have their own limiter: a password login is served now.
            form = await login_form(http)
            resp = await http.post("/oauth2/authorize",
                                   data=form | {"username": "alice", "password": PASSWORDS["alice"]})
            assert resp.status_code == 200 and "Allow" in resp.text
            assert not stuck  # the client checks are still held
            release.set()
        assert sorted(r.status_code for r in stuck) == [401, 401, 401]


async def test_full_login_queue_shows_a_503_page(make_server: Callable[..., Any]) -> None:
    running = await make_server(hash_queue=0)
    services = running.state.oauth
    release = threading.Event()
    real = services.hasher.offload

    async def blocked(fn: Callable[[], Any]) -> Any:
        return await real(lambda: (release.wait(10), fn())[1])

    gate = gate_logins(running)
    gate.inner = blocked
    gate.opened.set()
    async with httpx.AsyncClient(base_url=running.url(""), timeout=20) as http:
        form = await login_form(http)
        wrong = form | {"username": "bob", "password": "wrong"}
        held: list[httpx.Response] = []

        async def guess() -> None:
            held.append(await http.post("/oauth2/authorize", data=wrong))
            gate.poke()

        async with trio.open_nursery() as nursery:
            for _ in range(2):  # ARGON2_THREADS running, none may wait
                nursery.start_soon(guess)
            await gate.until(lambda: gate.entered == 2)
            resp = await http.post("/oauth2/authorize", data=form | {"username": "alice", "password": "x"})
            assert resp.status_code == 503 and int(resp.headers["retry-after"]) >= 1
            assert "busy" in resp.text and "<form" in resp.text
            release.set()
        assert [r.status_code for r in held] == [400, 400]
        # A 503 spends no try: alice's bucket is untouched.
        resp = await http.post("/oauth2/authorize", data=form | {"username": "alice", "password": PASSWORDS["alice"]})
        assert resp.status_code == 200


@pytest.mark.parametrize(("line", "key"), [
    ('client_auth_rate = "lots"', "oauth.client_auth_rate"),
    ('login_user_rate = "0/m"', "oauth.login_user_rate"),
    ("hash_queue = -1", "oauth.hash_queue"),
    ('hash_queue = "32"', "oauth.hash_queue"),
])
def test_bad_new_keys_name_file_line_and_key(tmp_path: Path, line: str, key: str) -> None:
    conf = write_conf(tmp_path)
    text = conf.read_text().replace('users = "users.json"\n', f'users = "users.json"\n{line}\n')
    conf.write_text(text)
    lineno = text.splitlines().index(line) + 1
    with pytest.raises(ConfigError) as info:
        load_settings(conf)
    assert f"realtime.toml:{lineno}: {key}" in str(info.value)


def test_new_keys_defaults_and_values(tmp_path: Path) -> None:
    conf = write_conf(tmp_path)
    assert (load_settings(conf).oauth.client_auth_rate, load_settings(conf).oauth.hash_queue) == ("20/m", 32)
    text = conf.read_text().replace('users = "users.json"\n',
                                    'users = "users.json"\nclient_auth_rate = "5/s"\nhash_queue = 4\n'
                                    'login_user_rate = "100/h"\n')
    conf.write_text(text)
    oauth = load_settings(conf).oauth
    assert (oauth.client_auth_rate, oauth.hash_queue, oauth.login_user_rate) == ("5/s", 4, "100/h")


async def test_thread_offload_bounds_its_wait_queue() -> None:
    offload = thread_offload(trio.CapacityLimiter(1), max_waiting=1)
    release = threading.Event()
    results: list[Any] = []

    async def run() -> None:
        results.append(await offload(lambda: release.wait(10)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(OffloadBusy) as info:
            await offload(lambda: None)
        assert info.value.retry_after >= 1
        release.set()
    assert results == [True, True]
    assert await offload(lambda: 7) == 7  # room again
