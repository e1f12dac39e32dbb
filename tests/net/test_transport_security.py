"""HTTPS rules through a real server: HSTS on HTTPS answers
unless public_url is a loopback host, and OAuth over plain HTTP refused
for peers outside ``[server] tls_termination_from``; the two config keys."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from realtime.config.load import ConfigError, load_settings
from realtime.config.settings import ServerSettings
from realtime.http.transport_security import is_loopback_host, trusted_as_tls
from tests.helpers.server import write_conf

ONE_YEAR = 365 * 86400


# -- HSTS ----------------------------------------------------------------------


async def test_https_answers_carry_hsts_when_public_url_is_not_loopback(
        start_server, make_settings, client_ssl: ssl.SSLContext) -> None:
    server = await start_server(make_settings(server={"public_url": "https://realtime.test"}))
    base = f"https://localhost:{server.https.port}"
    async with httpx.AsyncClient(verify=client_ssl) as client:
        for path, status in (("/healthz", 200), ("/nope", 404), ("/oauth2/jwks", 200)):
            r = await client.get(base + path)
            assert r.status_code == status
            assert r.headers["strict-transport-security"] == f"max-age={ONE_YEAR}", path
        r = await client.post(base + "/oauth2/token", data={"grant_type": "nope"})
        assert r.status_code == 400
        assert r.headers["strict-transport-security"] == f"max-age={ONE_YEAR}"
    # Never on plain HTTP (RFC 6797 §7.2: "MUST NOT include" it there).
    async with httpx.AsyncClient() as client:
        r = await client.get(server.url("/healthz"))
    assert r.status_code == 200 and "strict-transport-security" not in r.headers


@pytest.mark.parametrize("public_url", ["https://localhost", "https://127.0.0.1:8443", "https://[::1]"])
async def test_no_hsts_for_a_loopback_public_url(start_server, make_settings, client_ssl, public_url) -> None:
    server = await start_server(make_settings(server={"public_url": public_url}))
    async with httpx.AsyncClient(verify=client_ssl) as client:
        r = await client.get(f"https://localhost:{server.https.port}/healthz")
    assert r.status_code == 200 and "strict-transport-security" not in r.headers


async def test_hsts_max_age_zero_turns_it_off_and_a_value_is_used(start_server, make_settings, client_ssl) -> None:
    off = await start_server(make_settings(server={"public_url": "https://realtime.test", "hsts_max_age": 0.0}))
    short = await start_server(make_settings(server={"public_url": "https://realtime.test", "hsts_max_age": 600.0}))
    async with httpx.AsyncClient(verify=client_ssl) as client:
        r = await client.get(f"https://localhost:{off.https.port}/healthz")
        assert "strict-transport-security" not in r.headers
        r = await client.get(f"https://localhost:{short.https.port}/healthz")
        assert r.headers["strict-transport-security"] == "max-age=600"


# -- OAuth needs TLS -------------------------------------------------------------


async def test_plain_http_oauth_from_a_remote_peer_is_redirected_or_refused(start_server, make_settings) -> None:
    # No trusted proxy: the test's 127.0.0.1 client counts as a remote peer.
    server = await start_server(make_settings(server={"tls_termination_from": ()}))
    async with httpx.AsyncClient() as client:
        r = await client.get(server.url("/oauth2/authorize?client_id=chat-app&state=a%20b"))
        assert r.status_code == 308
        assert r.headers["location"] == "https://localhost/oauth2/authorize?client_id=chat-app&state=a%20b"
        r = await client.head(server.url("/oauth1/authorize?oauth_token=t"))
        assert r.status_code == 308 and r.headers["location"] == "https://localhost/oauth1/authorize?oauth_token=t"
        r = await client.post(server.url("/oauth2/token"), data={"grant_type": "client_credentials",
                                                                "client_id": "x", "client_secret": "s"})
        assert r.status_code == 400
        assert r.json() == {"error": "invalid_request",
                            "error_description": "TLS is required; use https://localhost"}
        r = await client.post(server.url("/oauth1/request_token"))
        assert r.status_code == 400 and r.json()["error"] == "invalid_request"
        # Everything else is served on plain HTTP as before.
        assert (await client.get(server.url("/healthz"))).status_code == 200
        assert (await client.get(server.url("/.well-known/oauth-authorization-server"))).status_code == 200


async def test_trusted_proxy_and_http_public_url_keep_plain_http(start_server, make_settings) -> None:
    local = await start_server(make_settings())  # default: 127.0.0.0/8 and ::1 are trusted
    plain = await start_server(make_settings(server={"tls_termination_from": (), "public_url": "http://127.0.0.1"}))
    async with httpx.AsyncClient() as client:
        for server in (local, plain):
            r = await client.get(server.url("/oauth2/jwks"))
            assert r.status_code == 200 and "keys" in r.json()
            r = await client.post(server.url("/oauth2/token"), data={"grant_type": "nope"})
            assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


async def test_https_oauth_is_served_to_any_peer(start_server, make_settings, client_ssl) -> None:
    server = await start_server(make_settings(server={"tls_termination_from": ()}))
    async with httpx.AsyncClient(verify=client_ssl) as client:
        r = await client.get(f"https://localhost:{server.https.port}/oauth2/jwks")
    assert r.status_code == 200


# -- the pure rules ----------------------------------------------------------------


def test_loopback_hosts() -> None:
    for host in ("localhost", "LOCALHOST.", "app.localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]"):
        assert is_loopback_host(host), host
    for host in ("realtime.test", "localhost.example", "10.0.0.1", "::2", "", "0.0.0.0"):
        assert not is_loopback_host(host), host


def test_trusted_as_tls_matches_cidrs_and_mapped_addresses() -> None:
    server = ServerSettings(tls_termination_from=("10.1.0.0/16", "fd00::/8"))
    assert trusted_as_tls("10.1.2.3", server)
    assert trusted_as_tls("::ffff:10.1.2.3", server)
    assert trusted_as_tls("fd00::5", server)
    assert not trusted_as_tls("10.2.0.1", server)
    assert not trusted_as_tls("127.0.0.1", server)
    assert not trusted_as_tls("", server)
    assert trusted_as_tls("127.0.0.1", ServerSettings()) and trusted_as_tls("::1", ServerSettings())


# -- the config keys ---------------------------------------------------------------


def _conf_with(tmp_path: Path, lines: str) -> Path:
    path = write_conf(tmp_path)
    path.write_text(path.read_text().replace("[server]\n", "[server]\n" + lines, 1))
    return path


def test_keys_load_with_their_defaults_and_values(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    default = load_settings(write_conf(tmp_path / "a")).server
    assert default.hsts_max_age == ONE_YEAR
    assert default.tls_termination_from == ("127.0.0.0/8", "::1/128")
    (tmp_path / "b").mkdir()
    server = load_settings(_conf_with(tmp_path / "b", 'hsts_max_age = "0s"\n'
                                      'tls_termination_from = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]\n')).server
    assert server.hsts_max_age == 0
    assert server.tls_termination_from == ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32")


@pytest.mark.parametrize("line, needle", [
    ('hsts_max_age = "soon"\n', "hsts_max_age"),
    ('tls_termination_from = ["10.0.0.1/8"]\n', "tls_termination_from"),
    ('tls_termination_from = "127.0.0.1"\n', "tls_termination_from"),
])
def test_bad_values_name_file_line_and_key(tmp_path: Path, line: str, needle: str) -> None:
    path = _conf_with(tmp_path, line)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    text = str(caught.value)
    assert f"{path}:3: server.{needle}: " in text, text
