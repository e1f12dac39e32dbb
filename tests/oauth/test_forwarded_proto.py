"""Behind a TLS-terminating proxy, through a real server: a request on the
plain listener from a peer in ``[server] tls_termination_from`` that says
``X-Forwarded-Proto: https`` gets what an HTTPS request gets (``__Host-``
cookies with ``Secure``, the CSRF binding read from them, HSTS); the same
header from any other peer is ignored, and without it nothing changes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import httpx

from realtime.config.settings import ServerSettings
from realtime.http.request import Request
from realtime.http.transport_security import behind_tls_proxy
from tests.helpers.oauth import CSRF, PASSWORDS, SESSION, WEB_CB, build_settings, hidden
from tests.helpers.server import Running

FORM = {"response_type": "code", "client_id": "web", "redirect_uri": WEB_CB, "scope": "chat:read",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}
PROXIED = {"x-forwarded-proto": "https"}


async def serve(start_server: Callable[..., Any], make_settings: Callable[..., Any], hashes: dict[str, str],
                tmp_path: Path, **server: Any) -> Running:
    mine = build_settings(tmp_path, hashes, time.time())
    return await start_server(make_settings(apps=mine.apps, users=mine.users, server=server,
                                            oauth={"signing_alg": "ES256"}))


def set_cookies(resp: httpx.Response) -> list[str]:
    return resp.headers.get_list("set-cookie")


async def test_trusted_proxy_with_forwarded_https_gets_host_cookies_and_hsts(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], hashes: dict[str, str],
        tmp_path: Path) -> None:
    # Default tls_termination_from: loopback, where the test client is.
    running = await serve(start_server, make_settings, hashes, tmp_path, public_url="https://realtime.test")
    async with httpx.AsyncClient(base_url=running.url("")) as http:
        resp = await http.get("/oauth2/authorize", params=FORM, headers=PROXIED)
        assert resp.status_code == 200
        assert resp.headers["strict-transport-security"].startswith("max-age=")
        [binding] = set_cookies(resp)
        assert binding.startswith(CSRF + "=") and "; Secure" in binding and "; Path=/;" in binding
        fields = hidden(resp.text)
        issued = binding.split(";", 1)[0]
        login = fields | {"username": "alice", "password": PASSWORDS["alice"]}
        # The binding is read under the effective scheme's name: the bare
        # name (what a plain-HTTP page could toss) is not read.
        bare = "rt_csrf=" + issued.split("=", 1)[1]
        resp = await http.post("/oauth2/authorize", data=login, headers=PROXIED | {"cookie": bare})
        assert resp.status_code == 403
        resp = await http.post("/oauth2/authorize", data=login, headers=PROXIED | {"cookie": issued})
        assert resp.status_code == 200, resp.text
        assert resp.headers["strict-transport-security"].startswith("max-age=")
        session = [c for c in set_cookies(resp) if c.startswith(SESSION + "=")]
        assert session and "; Secure" in session[0] and "; Path=/;" in session[0]
        # Without the header the same trusted peer is plain HTTP, as before.
        resp = await http.get("/oauth2/authorize", params=FORM)
        assert resp.status_code == 200 and "strict-transport-security" not in resp.headers
        [binding] = set_cookies(resp)
        assert binding.startswith("rt_csrf=") and "Secure" not in binding


async def test_forwarded_proto_from_an_untrusted_peer_is_ignored(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], hashes: dict[str, str],
        tmp_path: Path) -> None:
    running = await serve(start_server, make_settings, hashes, tmp_path, public_url="http://realtime.test",
                          tls_termination_from=())
    async with httpx.AsyncClient(base_url=running.url("")) as http:
        resp = await http.get("/oauth2/authorize", params=FORM, headers=PROXIED)
        assert resp.status_code == 200
        assert "strict-transport-security" not in resp.headers
        [binding] = set_cookies(resp)
        assert binding.startswith("rt_csrf=") and "Secure" not in binding and "__Host-" not in binding


def test_only_a_single_https_value_is_believed() -> None:
    server = ServerSettings()  # trusts loopback

    def scheme(peer: str, *values: str) -> str:
        request = Request("GET", "/", tuple(("x-forwarded-proto", v) for v in values), client_host=peer)
        return behind_tls_proxy(request, server).effective_scheme

    assert scheme("127.0.0.1", "https") == "https"
    assert scheme("127.0.0.1", "HTTPS ") == "https"
    assert scheme("127.0.0.1") == "http"
    assert scheme("127.0.0.1", "http") == "http"
    assert scheme("127.0.0.1", "https, http") == "http"
    assert scheme("127.0.0.1", "https", "https") == "http"
    assert scheme("192.0.2.1", "https") == "http"
