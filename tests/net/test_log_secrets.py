"""No secret ever reaches a log record (issue 13 §5; issue 18, finding L6).

A real server runs a whole OAuth life over HTTPS and WebSocket while every
log record of every logger is captured at DEBUG: password login through
``/oauth2/authorize`` (one wrong password first), the code exchange,
refresh, introspection, revocation, ``client_credentials`` and
``password`` grants with client secrets (one wrong secret), WebSocket
handshakes with the token in the header, in the subprotocol list and
(refused) in the query, and an in-band ``refresh``.  No password, client
secret, authorization code, refresh token or access token may appear in
any record: its formatted message, its args, or its exception text.

The real command's own log is checked too: at ``log_level = "debug"`` a
failed OAuth 1.0a HMAC check leaves neither the verifier nor the token in
it (oauthlib stays at WARNING), and a broker URL's password never appears
(the "cannot start" error, and the connect, loss and retry lines).
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from secrets import token_urlsafe
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import attrs
import httpx
import pytest
import trio
from oauthlib.oauth1 import Client
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.helpers.redis import RedisServer, free_port
from tests.helpers.server import ServerProcess, write_conf

from tests.helpers.ws import next_of_type
from tests.helpers.oauth import (
    CHEAP,
    OLD_WEB_SECRET,
    PASSWORDS,
    PW_SECRET,
    SVC_SECRET,
    WEB_CB,
    WEB_SECRET,
    WEIRD_SECRET,
    build_settings,
    hidden,
    new_pkce,
)

# Client-side libraries run in this process too; their records are not the server's.
CLIENT_LOGGERS = ("httpx", "httpcore", "hpack", "trio-websocket", "trio_websocket", "websockets", "hypothesis")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(CLIENT_LOGGERS):
            self.records.append(record)

    def texts(self) -> list[tuple[str, str]]:
        out = []
        fmt = logging.Formatter()
        for r in self.records:
            parts = [fmt.format(r), repr(r.args), repr(r.msg)]
            if r.exc_info and r.exc_info[1] is not None:
                parts.append(repr(r.exc_info[1].args))
            out.append((r.name, "\n".join(parts)))
        return out


@pytest.fixture
def capture() -> Any:
    handler = Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def fragments(secret: str) -> list[str]:
    """The secret and, for long ones, a 16-character piece of its middle
    (a log line that cuts a token short still leaks it)."""
    if len(secret) < 24:
        return [secret]
    mid = len(secret) // 2
    return [secret, secret[mid - 8:mid + 8]]


async def test_no_secret_in_any_log_record(start_server, make_settings, client_ssl: ssl.SSLContext,
                                           tmp_path, capture: Capture) -> None:
    values = {"web": WEB_SECRET, "old": OLD_WEB_SECRET, "svc": SVC_SECRET, "pw": PW_SECRET,
              "weird": WEIRD_SECRET, **PASSWORDS}
    oauth = build_settings(tmp_path, {k: CHEAP.hash(v) for k, v in values.items()}, time.time())
    base = make_settings(oauth={"signing_alg": "ES256", "login_rate": "50/m"})
    settings = attrs.evolve(base, apps=oauth.apps, users=oauth.users)
    server = await start_server(settings)
    secrets: dict[str, str] = {"alice password": PASSWORDS["alice"], "wrong password": "not-alices-pw-123",
                               "web secret": WEB_SECRET, "svc secret": SVC_SECRET, "pw secret": PW_SECRET,
                               "bob password": PASSWORDS["bob"], "wrong secret": "wrong-secret-XYZ-987"}
    base_url = f"https://localhost:{server.https.port}"

    async with httpx.AsyncClient(base_url=base_url, verify=client_ssl) as http:
        # 1. Authorization code flow with PKCE: login form, a wrong password, login, consent.
        p = new_pkce()
        secrets["pkce verifier"] = p.verifier
        r = await http.get("/oauth2/authorize", params={
            "response_type": "code", "client_id": "web", "redirect_uri": WEB_CB, "scope": "chat:read chat:write",
            "state": "st", "code_challenge": p.challenge, "code_challenge_method": "S256"})
        assert r.status_code == 200
        assert "Secure" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
        fields = hidden(r.text)
        r = await http.post("/oauth2/authorize", data={**fields, "action": "login", "username": "alice",
                                                       "password": secrets["wrong password"]})
        assert r.status_code in (200, 400, 401), r.text
        fields = hidden(r.text)
        r = await http.post("/oauth2/authorize", data={**fields, "action": "login", "username": "alice",
                                                       "password": PASSWORDS["alice"]})
        for _ in range(2):
            if r.status_code != 200:
                break
            r = await http.post("/oauth2/authorize", data={**hidden(r.text), "action": "consent", "decision": "allow"})
        assert r.status_code == 302, r.text
        code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
        secrets["authorization code"] = code

        # 2. Code exchange (client_secret_basic), then refresh (client_secret_post).
        r = await http.post("/oauth2/token", auth=("web", WEB_SECRET), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB, "code_verifier": p.verifier})
        assert r.status_code == 200, r.text
        tok1 = r.json()
        r = await http.post("/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": tok1["refresh_token"],
                                                   "client_id": "web", "client_secret": WEB_SECRET})
        assert r.status_code == 200, r.text
        tok2 = r.json()
        # A wrong client secret is refused (and must not be logged either).
        r = await http.post("/oauth2/token", auth=("web", secrets["wrong secret"]), data={
            "grant_type": "refresh_token", "refresh_token": tok2["refresh_token"]})
        assert r.status_code == 401

        # 3. WebSocket: header token, in-band refresh, subprotocol token, refused query token.
        url = f"wss://localhost:{server.https.port}/ws"
        async with open_websocket_url(url, ssl_context=client_ssl,
                                      extra_headers=[(b"authorization", f"Bearer {tok1['access_token']}".encode())]) as ws:
            await next_of_type(ws, "welcome")
            await ws.send_message(json.dumps({"type": "refresh", "token": tok2["access_token"], "id": 1}))
            assert (await next_of_type(ws, "refreshed"))["id"] == 1
            await ws.send_message(json.dumps({"type": "refresh", "token": tok2["access_token"][:-4] + "AAAA", "id": 2}))
            assert (await next_of_type(ws, "error"))["id"] == 2
        async with open_websocket_url(url, ssl_context=client_ssl,
                                      subprotocols=["realtime.v1", f"bearer.{tok2['access_token']}"]) as ws:
            await next_of_type(ws, "welcome")
        with pytest.raises(ConnectionRejected):
            async with open_websocket_url(f"{url}?access_token={tok2['access_token']}", ssl_context=client_ssl):
                pass

        # 4. Introspection and userinfo, then revocation of the refresh token.
        for token in (tok2["access_token"], tok2["refresh_token"]):
            r = await http.post("/oauth2/introspect", auth=("web", WEB_SECRET), data={"token": token})
            assert r.json()["active"] is True
        r = await http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {tok2['access_token']}"})
        assert r.status_code == 200
        r = await http.post("/oauth2/revoke", auth=("web", WEB_SECRET),
                            data={"token": tok2["refresh_token"], "token_type_hint": "refresh_token"})
        assert r.status_code == 200
        # Reusing the rotated refresh token (family revocation path, which logs a warning).
        r = await http.post("/oauth2/token", auth=("web", WEB_SECRET),
                            data={"grant_type": "refresh_token", "refresh_token": tok1["refresh_token"]})
        assert r.status_code == 400

        # 5. client_credentials and password grants.
        r = await http.post("/oauth2/token", auth=("svc", SVC_SECRET), data={"grant_type": "client_credentials"})
        assert r.status_code == 200, r.text
        tok3 = r.json()
        r = await http.post("/oauth2/token", auth=("pw", PW_SECRET), data={
            "grant_type": "password", "username": "bob", "password": PASSWORDS["bob"], "scope": "chat:read"})
        assert r.status_code == 200, r.text
        tok4 = r.json()

    for name, tok in (("code grant", tok1), ("refresh grant", tok2), ("client_credentials", tok3), ("password grant", tok4)):
        secrets[f"{name} access token"] = tok["access_token"]
        if "refresh_token" in tok:
            secrets[f"{name} refresh token"] = tok["refresh_token"]

    texts = capture.texts()
    assert any(name.startswith("realtime") for name, _ in texts), "captured no server log at all"
    leaks = [(what, name, text[:300]) for name, text in texts
             for what, secret in secrets.items() for piece in fragments(secret) if piece in text]
    assert not leaks, leaks


# -- the real command's log (issue 18, review finding L6) ------------------------


def debug_conf(tmp_path: Path, extra: str = "") -> Path:
    config = write_conf(tmp_path)
    config.write_text(config.read_text().replace("[server]\n", '[server]\nlog_level = "debug"\n', 1) + extra)
    return config


async def stop(server: ServerProcess) -> str:
    """SIGTERM, the exit code checked, the whole log."""
    server.proc.send_signal(signal.SIGTERM)
    with trio.fail_after(15):
        assert await server.proc.wait() == 0
    await trio.lowlevel.checkpoint()
    return "\n".join(server.lines)


async def test_debug_level_keeps_oauth1_verifier_and_token_out_of_the_log(tmp_path: Path,
                                                                         nursery: trio.Nursery) -> None:
    """At log_level = "debug", oauthlib would log the signature base string
    of a failed HMAC check, with oauth_token and oauth_verifier in it."""
    config = debug_conf(tmp_path)
    added = subprocess.run([sys.executable, "-m", "realtime", "app", "add", "legacy", "-c", str(config),
                            "--redirect-uri", "http://127.0.0.1:9/cb", "--scope", "chat:read", "--oauth1"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert added.returncode == 0, added.stderr
    creds = dict(line.split(": ", 1) for line in added.stdout.splitlines() if ": " in line)
    server, bound = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path)
    base = f"http://{bound['http']}"
    verifier = "verifier-" + token_urlsafe(12)
    async with httpx.AsyncClient() as http:
        client = Client(creds["consumer_key"], client_secret=creds["consumer_secret"],
                        callback_uri="http://127.0.0.1:9/cb")
        uri, headers, _ = client.sign(f"{base}/oauth1/request_token", http_method="POST")
        r = await http.post(uri, headers=headers)
        assert r.status_code == 200, r.text
        request_token = dict(parse_qsl(r.text))["oauth_token"]
        # The right token with a wrong token secret: the HMAC check fails.
        client = Client(creds["consumer_key"], client_secret=creds["consumer_secret"],
                        resource_owner_key=request_token, resource_owner_secret="not-the-secret", verifier=verifier)
        uri, headers, _ = client.sign(f"{base}/oauth1/access_token", http_method="POST")
        r = await http.post(uri, headers=headers)
        assert r.status_code == 401 and "signature_invalid" in r.text, r.text
    log = await stop(server)
    assert "listening http=" in log  # the log was captured
    for what, secret in (("verifier", verifier), ("request token", request_token),
                         ("consumer secret", creds["consumer_secret"])):
        assert secret not in log, f"{what} in the log:\n{log}"


def test_unreachable_broker_error_hides_the_password(tmp_path: Path) -> None:
    password = "S3cretRedisPass"
    port = free_port()
    config = debug_conf(tmp_path, f'\n[broker]\nurl = "redis://:{password}@127.0.0.1:{port}/0"\n')
    done = subprocess.run([sys.executable, "-m", "realtime", "serve", "-c", str(config)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 1
    assert f"cannot start: broker redis://:***@127.0.0.1:{port}/0 is unreachable" in done.stderr, done.stderr
    assert password not in done.stderr


async def test_broker_connect_loss_and_retry_lines_hide_the_password(tmp_path: Path, nursery: trio.Nursery) -> None:
    password = "An0therRedisPass"
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as raw:
            raw.sendall(f"CONFIG SET requirepass {password}\r\n".encode())
            assert raw.recv(64).startswith(b"+OK")
        config = debug_conf(tmp_path, f'\n[broker]\nurl = "redis://:{password}@127.0.0.1:{redis.port}/0"\n')
        server, _ = await ServerProcess.start(nursery, ["serve", "-c", str(config)], tmp_path)
        await server.wait_for_line("broker: connected to redis://:***@")
        redis.stop()
        await server.wait_for_line("broker: lost connection to redis://:***@")
        await server.wait_for_line("broker: cannot reach redis://:***@")
    finally:
        redis.stop()
    log = await stop(server)
    assert password not in log, log
