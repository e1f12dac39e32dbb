"""Two nodes with separate state dirs on one PostgreSQL database (SPEC §14):
a grant answered by one is refreshed by the other, and a reuse seen by
either revokes the family for both.  No Redis: the store alone is shared."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any, Callable

import attrs
import httpx
import trio

from realtime.cli.main import build_parser
from realtime.config.load import load_settings
from realtime.config.settings import StoreSettings
from realtime.store.postgres import PgStore
from tests.helpers.oidc import OIDC_SECRET, Browser, exchange, oidc_settings


async def refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": token},
                           auth=("rp", OIDC_SECRET))


async def test_log_in_on_a_refresh_on_b_reuse_on_a_revokes_for_both(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], pg_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "store.key"  # the one file every node holds
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    base = oidc_settings(make_settings(store=StoreSettings(url=pg_url, key_file=key_file)))
    a = await start_server(attrs.evolve(base, server=attrs.evolve(base.server, state_dir=tmp_path / "a")))
    b = await start_server(attrs.evolve(base, server=attrs.evolve(base.server, state_dir=tmp_path / "b")))
    async with httpx.AsyncClient(base_url=a.url("")) as on_a, httpx.AsyncClient(base_url=b.url("")) as on_b:
        got = await Browser(on_a, "").code(scope="openid chat:read offline_access")
        first = await exchange(on_a, got["code"])
        # The code is single-use on every node: B refuses it.
        replay = await on_b.post("/oauth2/token", data={"grant_type": "authorization_code", "code": got["code"],
                                                         "redirect_uri": "http://127.0.0.1/cb"},
                                 auth=("rp", OIDC_SECRET))
        assert replay.status_code == 400
        first = await exchange(on_a, (await Browser(on_a, "").code(scope="openid chat:read offline_access"))["code"])

        on_b_answer = await refresh(on_b, first["refresh_token"])
        assert on_b_answer.status_code == 200, on_b_answer.text
        second = on_b_answer.json()
        assert second["refresh_token"] != first["refresh_token"]

        reuse = await refresh(on_a, first["refresh_token"])  # the rotated token again, on A
        assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
        # The family is revoked in the shared store: B's fresh token is dead too.
        dead = await refresh(on_b, second["refresh_token"])
        assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"
    # Neither node wrote a SQLite store of its own.
    assert not (tmp_path / "a" / "state.sqlite3").exists() and not (tmp_path / "b" / "state.sqlite3").exists()


def _kid(token: str) -> str:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]


async def test_key_rotate_on_b_is_signed_with_on_a_within_a_second(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], pg_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "store.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    base = oidc_settings(make_settings(store=StoreSettings(url=pg_url, key_file=key_file)))
    a = await start_server(attrs.evolve(base, server=attrs.evolve(base.server, state_dir=tmp_path / "a")))
    await start_server(attrs.evolve(base, server=attrs.evolve(base.server, state_dir=tmp_path / "b")))
    conf_b = tmp_path / "b.toml"  # node B's config, as its operator has it
    conf_b.write_text(f'[server]\nstate_dir = "b"\n[oauth]\nsigning_alg = "{base.oauth.signing_alg}"\n'
                      f'[store]\nurl = "{pg_url}"\nkey_file = "store.key"\n')
    async with httpx.AsyncClient(base_url=a.url("")) as on_a:
        got = await exchange(on_a, (await Browser(on_a, "").code(scope="openid chat:read offline_access"))["code"])
        old_token, old_kid = got["access_token"], _kid(got["access_token"])
        assert not (tmp_path / "a" / "keys").exists() and not (tmp_path / "b" / "keys").exists()

        args = build_parser().parse_args(["key", "rotate", "-c", str(conf_b)])
        assert await trio.to_thread.run_sync(args.func, args) == 0
        rotated = trio.current_time()
        refresh_token, kids = got["refresh_token"], []
        while trio.current_time() - rotated < 1.0:  # bounded: A must sign with the new key within a second
            answer = await refresh(on_a, refresh_token)
            assert answer.status_code == 200, answer.text
            refresh_token = answer.json()["refresh_token"]
            kids.append(_kid(answer.json()["access_token"]))
            if kids[-1] != old_kid:
                break
        assert kids[-1] != old_kid, f"node A still signs with {old_kid} a second after the rotation"
        assert len({k["kid"] for k in (await on_a.get("/oauth2/jwks")).json()["keys"]}) == 2
        # The old key still verifies on A until it retires.
        info = await on_a.get("/oauth2/userinfo", headers={"authorization": f"Bearer {old_token}"})
        assert info.status_code == 200, info.text
    assert not (tmp_path / "b" / "keys").exists()  # the rotation wrote the store, not B's state dir


async def test_a_reload_takes_the_ring_from_the_store(start_server: Callable[..., Any], pg_url: str,
                                                     tmp_path: Path) -> None:
    key_file = tmp_path / "store.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    conf = tmp_path / "realtime.toml"
    conf.write_text('[server]\nhttp = "127.0.0.1:0"\nhttps = ""\nstate_dir = "var"\n'
                    'public_url = "https://localhost"\n[oauth]\nsigning_alg = "ES256"\n'
                    f'[store]\nurl = "{pg_url}"\nkey_file = "store.key"\n')
    node = await start_server(load_settings(conf))
    first = node.state.keyring.active
    assert first.alg == "ES256"
    # The operator switches the algorithm: the reload makes an EdDSA key in the store, the old one retires.
    conf.write_text(conf.read_text().replace('"ES256"', '"EdDSA"'))
    assert await node.server.reload("test")
    ring = node.state.keyring
    assert ring.active.alg == "EdDSA" and ring.keys[first.kid].retire_at is not None
    store = PgStore.open(pg_url, pool_size=1)
    try:
        assert {row[0] for row in store.signing_key_rows()} == {first.kid, ring.active.kid}
    finally:
        store.close()
    assert not (tmp_path / "var" / "keys").exists()
