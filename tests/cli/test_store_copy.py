"""``realtime store copy --to URL``: a stopped node's SQLite state and key
ring moved into PostgreSQL, where a node on the shared store carries on
(refreshes the copied family, refuses the revoked token, redeems the code)."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any, Callable

import attrs
import httpx
import pytest

from realtime.cli.admin.store_copy import CopyError, copy_state
from realtime.cli.main import build_parser
from realtime.config.settings import StoreSettings
from realtime.store.postgres import PgStore
from tests.helpers.oidc import OIDC_SECRET, RP_CB, Browser, exchange, oidc_settings


def _kid(token: str) -> str:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]


async def test_a_copied_state_carries_on_on_a_postgres_node(
        start_server: Callable[..., Any], make_settings: Callable[..., Any], pg_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "store.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    base = oidc_settings(make_settings())
    alone = attrs.evolve(base, server=attrs.evolve(base.server, state_dir=tmp_path / "alone"),
                         store=StoreSettings(key_file=key_file))
    node = await start_server(alone)
    async with httpx.AsyncClient(base_url=node.url("")) as http:
        browser = Browser(http, "")
        got = await exchange(http, (await browser.code(scope="openid chat:read offline_access"))["code"])
        pending = (await browser.code(scope="openid chat:read offline_access"))["code"]  # not redeemed yet
        revoked = await exchange(http, (await browser.code(scope="openid chat:read"))["code"])
        answer = await http.post("/oauth2/revoke", data={"token": revoked["access_token"]}, auth=("rp", OIDC_SECRET))
        assert answer.status_code == 200
    with pytest.raises(CopyError, match="a server is running"):
        copy_state(alone, pg_url)
    node.stop()
    await node.stopped.wait()

    counts = copy_state(alone, pg_url)
    assert counts["families"] >= 2 and counts["codes"] == 3 and counts["consents"] == 1 and counts["revoked"] >= 1
    assert counts["signing_keys"] == 1 and counts["fingerprints re-keyed"] >= 3
    with pytest.raises(CopyError, match="already holds"):  # only into an empty database
        copy_state(alone, pg_url)

    shared = attrs.evolve(base, server=attrs.evolve(base.server, state_dir=tmp_path / "pg"),
                          store=StoreSettings(url=pg_url, key_file=key_file))
    pg_node = await start_server(shared)
    async with httpx.AsyncClient(base_url=pg_node.url("")) as http:
        # The family began on the SQLite node; its fingerprint was re-keyed, so it refreshes here.
        answer = await http.post("/oauth2/token", data={"grant_type": "refresh_token",
                                                        "refresh_token": got["refresh_token"]},
                                 auth=("rp", OIDC_SECRET))
        assert answer.status_code == 200, answer.text
        assert _kid(answer.json()["access_token"]) == _kid(got["access_token"])  # the same key ring
        old = await http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {got['access_token']}"})
        assert old.status_code == 200, old.text
        refused = await http.get("/oauth2/userinfo", headers={"authorization": f"Bearer {revoked['access_token']}"})
        assert refused.status_code == 401
        code = await http.post("/oauth2/token", data={"grant_type": "authorization_code", "code": pending,
                                                      "redirect_uri": RP_CB}, auth=("rp", OIDC_SECRET))
        assert code.status_code == 200, code.text
    assert not (tmp_path / "pg" / "keys").exists()
    store = PgStore.open(pg_url, pool_size=1)
    try:
        assert len(store.signing_key_rows()) == 1
    finally:
        store.close()


def test_copy_needs_a_key_file(tmp_path: Path, pg_url: str, capsys) -> None:
    conf = tmp_path / "realtime.toml"
    conf.write_text('[server]\nstate_dir = "var"\n')
    (tmp_path / "var").mkdir()
    args = build_parser().parse_args(["store", "copy", "--to", pg_url, "-c", str(conf)])
    assert args.func(args) == 1
    assert "no [store] key_file" in capsys.readouterr().err
