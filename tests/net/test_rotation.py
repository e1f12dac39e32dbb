"""Rotation under load, through the real commands and a real server process:
operators run `realtime app rotate-secret`, `realtime key rotate`, swap the
certificate and disable a user while clients keep working."""

from __future__ import annotations

import json
import re
import ssl
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import trio
import trustme
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.helpers.server import ServerProcess, realtime_cli, server_config

CONFIG = server_config(
    server='https = "127.0.0.1:0"\ntls_cert = "server.pem"\n', oauth='access_token_ttl = "5m"\n',
    # the load test measures rotation, not the limiters
    websocket='publish_rate = "1000000/s"\nmessage_rate = "1000000/s"\n')


def field(output: str, name: str) -> str:
    match = re.search(rf"^{name}: (\S+)$", output, re.M)
    assert match, output
    return match.group(1)


def setup_files(root: Path, ca: trustme.CA) -> Path:
    conf = root / "realtime.toml"
    conf.write_text(CONFIG)
    (root / "users.json").write_text('{"users": []}')
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    return conf


async def token(client: httpx.AsyncClient, base: str, client_id: str, secret: str) -> httpx.Response:
    return await client.post(f"{base}/oauth2/token", data={"grant_type": "client_credentials", "scope": "chat:read chat:write"},
                             auth=(client_id, secret))


async def test_rotate_secret_keeps_old_one_valid_for_the_grace(tmp_path: Path, ca: trustme.CA, nursery: trio.Nursery) -> None:
    conf = setup_files(tmp_path, ca)
    added = realtime_cli(conf, "app", "add", "worker", "--redirect-uri", "https://worker.example/cb",
                         "--grant", "client_credentials", "--scope", "chat:read", "chat:write")
    client_id, old_secret = field(added, "client_id"), field(added, "client_secret")
    server, bound = await ServerProcess.start(nursery, ["serve", "-c", str(conf)], tmp_path)
    base = f"http://{bound['http']}"
    results: Counter[int] = Counter()
    rotated = trio.Event()

    async with httpx.AsyncClient() as client:
        async def hammer() -> None:
            # Keep asking with the old secret all through the rotation.
            while not rotated.is_set() or results[200] < 40:
                results[(await token(client, base, client_id, old_secret)).status_code] += 1

        async with trio.open_nursery() as loop:
            loop.start_soon(hammer)
            out = await trio.to_thread.run_sync(lambda: realtime_cli(conf, "app", "rotate-secret", client_id, "--grace", "1h"))
            new_secret = field(out, "client_secret")
            await server.wait_for_line("reload (SIGHUP) applied")
            rotated.set()
        assert results == Counter({200: results[200]}), results  # no failure inside the grace
        assert (await token(client, base, client_id, new_secret)).status_code == 200
        assert (await token(client, base, client_id, old_secret)).status_code == 200

        # A second rotation with a short grace: the previous secret stops
        # working when the grace ends, the newest keeps working.
        out = await trio.to_thread.run_sync(lambda: realtime_cli(conf, "app", "rotate-secret", client_id, "--grace", "2s"))
        newest = field(out, "client_secret")
        await server.wait_for_line("reload (SIGHUP) applied", timeout=10)
        with trio.fail_after(15):
            while (await token(client, base, client_id, new_secret)).status_code == 200:
                await trio.sleep(0.25)  # polling a wall-clock deadline, not a sync point
        refused = await token(client, base, client_id, new_secret)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        assert (await token(client, base, client_id, newest)).status_code == 200
    server.proc.send_signal(2)
    with trio.fail_after(10):
        await server.proc.wait()


async def test_rotation_under_load_breaks_no_valid_client(tmp_path: Path, ca: trustme.CA, nursery: trio.Nursery) -> None:
    """N clients connected and publishing; the operator rotates the client
    secret, the signing key and the certificate, and disables one user.
    Only that user's sockets close (4003); nobody else sees a failure."""
    conf = setup_files(tmp_path, ca)
    added = realtime_cli(conf, "app", "add", "chat", "--redirect-uri", "https://chat.example/cb",
                         "--grant", "client_credentials", "password", "refresh_token", "--scope", "chat:read", "chat:write")
    client_id, secret = field(added, "client_id"), field(added, "client_secret")
    for name in ("alice", "mallory"):
        realtime_cli(conf, "user", "add", name, "--password-stdin", "--scope", "chat:read", "chat:write", stdin=f"pw-{name}-123456\n")
    server, bound = await ServerProcess.start(nursery, ["serve", "-c", str(conf)], tmp_path)
    base = f"http://{bound['http']}"
    https_port = int(bound["https"].rsplit(":", 1)[1])
    tls = ssl.create_default_context()
    ca.configure_trust(tls)
    new_ca = trustme.CA()
    new_ca.configure_trust(tls)  # clients trust both CAs, as after a planned CA move
    counts: Counter[str] = Counter()
    stop = trio.Event()
    clients = 24

    async with httpx.AsyncClient() as http:
        async def user_token(name: str) -> str:
            r = await http.post(f"{base}/oauth2/token", auth=(client_id, secret), data={
                "grant_type": "password", "username": name, "password": f"pw-{name}-123456", "scope": "chat:read chat:write"})
            assert r.status_code == 200, r.text
            return r.json()["access_token"]

        async def chatter(i: int, name: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            url = f"wss://localhost:{https_port}/ws" if i % 2 else f"ws://{bound['http']}/ws"
            tok = await user_token(name)
            try:
                async with open_websocket_url(url, ssl_context=tls if i % 2 else None,
                                              extra_headers=[(b"authorization", f"Bearer {tok}".encode())]) as ws:
                    counts["connected"] += 1
                    await ws.send_message(json.dumps({"type": "subscribe", "channel": "chat:load", "id": 0}))
                    task_status.started()
                    n = 0
                    while not stop.is_set():
                        n += 1
                        await ws.send_message(json.dumps({"type": "publish", "channel": "chat:load", "data": n, "id": n}))
                        while True:
                            msg = json.loads(await ws.get_message())
                            if msg.get("type") == "ack" and msg.get("id") == n:
                                counts["published"] += 1
                                break
                            if msg.get("type") == "error":
                                counts["errors"] += 1
                                break
            except ConnectionClosed as closed:
                counts[f"closed:{name}:{closed.reason.code}"] += 1

        rotations_done = trio.Event()
        five_after = trio.Event()

        async def fresh_handshakes() -> None:
            # New clients keep arriving during the rotations.
            after = 0
            while not stop.is_set():
                tok = await user_token("alice")
                try:
                    async with open_websocket_url(f"wss://localhost:{https_port}/ws", ssl_context=tls,
                                                  extra_headers=[(b"authorization", f"Bearer {tok}".encode())]) as ws:
                        assert json.loads(await ws.get_message())["type"] == "welcome"
                        counts["handshakes_ok"] += 1
                        if rotations_done.is_set():
                            after += 1
                            if after == 5:
                                five_after.set()
                except Exception as exc:  # noqa: BLE001 - counted, then asserted zero
                    counts[f"handshake_failed:{type(exc).__name__}"] += 1

        async with trio.open_nursery() as load:
            # 24 password grants, one argon2 check each: generous for a loaded CI box.
            with trio.fail_after(90):
                for i in range(clients):
                    await load.start(chatter, i, "mallory" if i == 0 else "alice")
            load.start_soon(fresh_handshakes)
            await trio.to_thread.run_sync(lambda: realtime_cli(conf, "app", "rotate-secret", client_id, "--grace", "1h"))
            await server.wait_for_line("reload (SIGHUP) applied")
            await trio.to_thread.run_sync(lambda: realtime_cli(conf, "key", "rotate"))
            new_ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
            await trio.to_thread.run_sync(lambda: realtime_cli(conf, "user", "disable", "mallory"))
            # rotate-secret, key rotate and user disable each reload once.
            await server.wait_for_count("reload (SIGHUP) applied", 3)
            rotations_done.set()
            with trio.fail_after(20):
                await five_after.wait()
            stop.set()
    unexpected = {k: v for k, v in counts.items() if k.startswith(("closed:alice", "handshake_failed")) or k == "errors"}
    print(f"rotation under load: {dict(counts)}")
    assert unexpected == {}, counts
    assert counts["closed:mallory:4003"] == 1
    assert counts["published"] > 0
    server.proc.send_signal(2)
    with trio.fail_after(10):
        await server.proc.wait()
