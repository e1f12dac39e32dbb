"""`kill -9` the real server during a burst of refresh-token requests: every
refresh token it answered with must still work exactly once after restart."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import trio

from tests.helpers.oauth import CHEAP
from tests.helpers.server import CONFIG, ServerProcess

SECRET = "crash-test-secret-" + "q" * 20
PASSWORD = "crash-test-password"
CHAINS = 12


def write_conf(root: Path) -> Path:
    conf = root / "conf"
    conf.mkdir()
    (conf / "realtime.toml").write_text(CONFIG)
    (conf / "apps.toml").write_text(
        "[[app]]\n"
        'name = "Legacy"\nclient_id = "pw"\n'
        f'client_secret_hash = "{CHEAP.hash(SECRET)}"\n'
        'grant_types = ["password", "refresh_token"]\nscopes = ["chat:read"]\n'
    )
    (conf / "users.json").write_text(json.dumps({"users": [
        {"name": "alice", "password_hash": CHEAP.hash(PASSWORD), "scopes": ["chat:read"]}]}))
    return conf / "realtime.toml"


async def test_kill_9_during_refresh_burst_loses_no_answered_token(tmp_path: Path, nursery: trio.Nursery) -> None:
    config = write_conf(tmp_path)
    server, bound = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path)
    base = f"http://{bound['http']}"
    auth = ("pw", SECRET)
    latest: dict[int, str] = {}  # chain -> last answered refresh token
    in_flight: dict[int, str] = {}  # chain -> token sent, answer not yet read
    answered: list[str] = []
    enough = trio.Event()
    all_stopped = trio.Event()
    stopped: list[int] = []

    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for chain in range(CHAINS):
            resp = await http.post("/oauth2/token", auth=auth, data={
                "grant_type": "password", "username": "alice", "password": PASSWORD})
            assert resp.status_code == 200, resp.text
            latest[chain] = resp.json()["refresh_token"]
            answered.append(latest[chain])

        async def burst(chain: int) -> None:
            # Even chains go quiet after a few rotations (their last answer is
            # then certainly unused); odd ones are in flight when the kill lands.
            rounds = 0
            while chain % 2 or rounds < 10:
                rounds += 1
                token = latest[chain]
                in_flight[chain] = token
                try:
                    resp = await http.post("/oauth2/token", auth=auth, data={
                        "grant_type": "refresh_token", "refresh_token": token})
                except httpx.TransportError:
                    stopped.append(chain)
                    if len(stopped) == CHAINS // 2:
                        all_stopped.set()
                    return  # the server died with this request in flight
                assert resp.status_code == 200, resp.text
                del in_flight[chain]
                latest[chain] = resp.json()["refresh_token"]
                answered.append(latest[chain])
                if len(answered) >= 20 * CHAINS:
                    enough.set()
            await trio.sleep_forever()

        with trio.fail_after(60):
            async with trio.open_nursery() as inner:
                for chain in range(CHAINS):
                    inner.start_soon(burst, chain)
                await enough.wait()
                server.proc.send_signal(signal.SIGKILL)
                await server.proc.wait()
                await all_stopped.wait()
                inner.cancel_scope.cancel()

    # Restart on the same state dir.
    server2, bound2 = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://{bound2['http']}", timeout=10) as http:
            checked = 0
            for chain, token in latest.items():
                if in_flight.get(chain) == token:
                    continue  # may or may not have been used: its answer was lost
                first = await http.post("/oauth2/token", auth=auth, data={
                    "grant_type": "refresh_token", "refresh_token": token})
                assert first.status_code == 200, (chain, first.text)
                again = await http.post("/oauth2/token", auth=auth, data={
                    "grant_type": "refresh_token", "refresh_token": token})
                assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
                checked += 1
            assert checked >= CHAINS // 2
    finally:
        server2.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await server2.proc.wait()
    # Every answered token is in the store, used or not.
    from realtime.store import Store, token_hash

    store = Store.open(tmp_path / "conf" / "var" / "state.sqlite3")
    try:
        assert all(store.get_refresh(token_hash(t)) is not None for t in answered)
    finally:
        store.close()
