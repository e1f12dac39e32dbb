"""``realtime store copy`` and what used to stay on one node: OAuth 1.0a
secrets sealed under ``state_dir/oauth1.key`` are re-sealed for the shared
store (token secrets in the copied rows, consumer secrets in the apps
file), and pending provider logins are re-sealed under the shared HMAC
key, so a PostgreSQL node on another host carries on with them."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any, Callable

import attrs
import trio
from authlib.integrations.httpx_client import AsyncOAuth1Client

from realtime.cli.admin.store_copy import copy_state
from realtime.cli.main import build_parser
from realtime.config.load import load_settings
from realtime.oauth.providers.pending import Pending
from realtime.oauth1 import crypto
from tests.helpers.oauth import CHEAP, PASSWORDS
from tests.helpers.oauth1 import CALLBACK, approve
from tests.helpers.server import APPS_TOML, server_config


def cli(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return args.func(args)


async def test_copy_reseals_oauth1_secrets_and_pending_logins(start_server: Callable[..., Any], pg_url: str,
                                                              tmp_path: Path, capsys: Any) -> None:
    key_file = tmp_path / "store.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    conf = tmp_path / "realtime.toml"
    conf.write_text(server_config(server='https = ""\n') + '\n[store]\nkey_file = "store.key"\n')
    (tmp_path / "apps.toml").write_text(APPS_TOML)
    (tmp_path / "users.json").write_text(json.dumps({"users": [
        {"name": "alice", "password_hash": CHEAP.hash(PASSWORDS["alice"]), "scopes": ["chat:read", "chat:write"]}]}))
    assert await trio.to_thread.run_sync(cli, "app", "add", "Legacy", "--oauth1", "--public", "--redirect-uri",
                                         CALLBACK, "--scope", "chat:read", "chat:write", "-c", str(conf)) == 0
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    consumer_key, consumer_secret = printed["consumer_key"], printed["consumer_secret"]

    alone = await start_server(load_settings(conf))  # a node on its own: SQLite and state_dir/oauth1.key
    base = alone.url("")
    async with AsyncOAuth1Client(consumer_key, consumer_secret, redirect_uri=CALLBACK) as client:
        await client.fetch_request_token(base + "/oauth1/request_token")
        resp = await approve(base, client.create_authorization_url(base + "/oauth1/authorize"))
        assert resp.status_code == 302, resp.text
        client.parse_authorization_response(resp.headers["location"])
        token = await client.fetch_access_token(base + "/oauth1/access_token")
    login = Pending(provider="corp", params={"client_id": "chat-app"}, binding="b" * 64, verifier="v" * 64,
                    redirect_uri="https://localhost/oauth2/callback/corp", expires_at=time.time() + 600)
    await alone.state.oauth.logins.add("a-state", login, address="192.0.2.1", now=time.time())
    alone.stop()
    await alone.stopped.wait()
    apps_before = (tmp_path / "apps.toml").read_text()

    counts = await trio.to_thread.run_sync(copy_state, load_settings(conf), pg_url)
    assert counts["OAuth 1 secrets re-sealed"] == 3  # request and access token secrets, the consumer secret
    assert counts["OAuth 1 secrets kept (not opening with oauth1.key)"] == 0
    assert counts["provider_logins"] == 1
    assert (tmp_path / "apps.toml.before-store-copy").read_text() == apps_before
    assert (tmp_path / "apps.toml").read_text() != apps_before
    assert 'name = "Legacy"' in (tmp_path / "apps.toml").read_text()  # the rest of the file as it was

    # A PostgreSQL node on another host: its own (empty) state dir, the key file and the config files.
    conf.write_text(conf.read_text().replace("[store]\n", f'[store]\nurl = "{pg_url}"\n'))
    shared = load_settings(conf)
    node = await start_server(attrs.evolve(shared, server=attrs.evolve(shared.server, state_dir=tmp_path / "pg")))
    async with AsyncOAuth1Client(consumer_key, consumer_secret, token=token["oauth_token"],
                                 token_secret=token["oauth_token_secret"], force_include_body=True) as client:
        resp = await client.post(node.url("/api/publish"), json={"channel": "chat:lobby", "data": "hi"})
        assert resp.status_code == 200, resp.text
    assert await node.state.oauth.logins.take("a-state", time.time()) == login
    assert not (tmp_path / "pg" / crypto.KEY_FILE).exists()


async def test_app_add_on_a_shared_store_seals_with_the_key_file(pg_url: str, tmp_path: Path, capsys: Any) -> None:
    key_file = tmp_path / "store.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    conf = tmp_path / "realtime.toml"
    conf.write_text(server_config() + f'\n[store]\nurl = "{pg_url}"\nkey_file = "store.key"\n')
    (tmp_path / "apps.toml").write_text(APPS_TOML)
    (tmp_path / "users.json").write_text('{"users": []}')
    assert cli("app", "add", "Legacy", "--oauth1", "--public", "--redirect-uri", CALLBACK, "-c", str(conf)) == 0
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    app = next(a for a in load_settings(conf).apps.values() if a.consumer_key == printed["consumer_key"])
    assert crypto.decrypt(crypto.shared_key(key_file.read_bytes()), app.consumer_secret_enc or "",
                          crypto.consumer_context(printed["consumer_key"])) == printed["consumer_secret"]
    assert not (tmp_path / "var" / crypto.KEY_FILE).exists()
