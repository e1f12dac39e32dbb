"""The device authorization grant (RFC 8628, SPEC §9) through the router:
the device authorization endpoint, /device, and a device polling the
token endpoint (pending, slow_down, denied, expired, the tokens once)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
import trio

from realtime.config.fields import ConfigError
from realtime.config.load import load_settings
from tests.helpers.device import DEVICE_GRANT, add_device_apps, decide, enter_code, poll, sign_in, start
from tests.helpers.oauth import WEB_SECRET, Env, body_json, header, hidden_fields
from tests.helpers.server import write_conf


@pytest.fixture
def denv(env: Env) -> Env:
    add_device_apps(env)
    return env


def error_of(resp) -> str:  # noqa: ANN001
    assert resp.status == 400, (resp.status, resp.body)
    return body_json(resp)["error"]


async def test_device_authorization_answer(denv: Env) -> None:
    resp = await denv.post("/oauth2/device_authorization", {"client_id": "tv", "scope": "chat:read"})
    assert resp.status == 200
    assert header(resp, "cache-control") == "no-store"
    body = body_json(resp)
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", body["user_code"])
    assert len(body["device_code"]) >= 43
    assert body["verification_uri"] == "https://auth.example/device"
    assert body["verification_uri_complete"] == f"https://auth.example/device?user_code={body['user_code']}"
    assert body["expires_in"] == 600 and body["interval"] == 5
    # Confidential: client authentication as at the token endpoint.
    assert (await start(denv, "box", "profile"))["user_code"]
    bad = await denv.post("/oauth2/device_authorization", {"scope": "profile"}, auth=("box", "wrong" * 8))
    assert bad.status == 401 and body_json(bad)["error"] == "invalid_client"
    # Only apps that list the grant; only their scopes.
    refused = await denv.post("/oauth2/device_authorization", {"client_id": "spa"})
    assert refused.status == 400 and body_json(refused)["error"] == "unauthorized_client"
    refused = await denv.post("/oauth2/device_authorization", {"client_id": "tv", "scope": "notify"})
    assert body_json(refused)["error"] == "invalid_scope"
    refused = await denv.post("/oauth2/device_authorization", {})
    assert refused.status == 401 and body_json(refused)["error"] == "invalid_client"


async def test_metadata_lists_the_grant_and_endpoint(denv: Env) -> None:
    meta = body_json(await denv.get("/.well-known/oauth-authorization-server"))
    assert DEVICE_GRANT in meta["grant_types_supported"]
    assert meta["device_authorization_endpoint"] == "https://auth.example/oauth2/device_authorization"


async def test_pending_slow_down_then_tokens_once(denv: Env) -> None:
    grant = await start(denv, scope="chat:read chat:write offline_access")
    code = grant["device_code"]
    assert error_of(await poll(denv, code)) == "authorization_pending"
    denv.advance(1)
    assert error_of(await poll(denv, code)) == "slow_down"  # interval now 10 s
    denv.advance(6)
    assert error_of(await poll(denv, code)) == "slow_down"  # 6 < 10; interval now 15 s
    denv.advance(15)
    assert error_of(await poll(denv, code)) == "authorization_pending"
    # Another client cannot poll it.
    assert error_of(await poll(denv, code, "box")) == "invalid_grant"

    await sign_in(denv)
    consent = await enter_code(denv, grant["user_code"].lower().replace("-", ""))  # any case, no dash
    assert b"Living-room TV" in consent.body and grant["user_code"].encode() in consent.body
    done = await decide(denv, consent, "allow")
    assert done.status == 200 and b"Device connected" in done.body

    denv.advance(20)
    resp = await poll(denv, code)
    assert resp.status == 200, resp.body
    tokens = body_json(resp)
    assert tokens["token_type"] == "Bearer" and tokens["access_token"] and tokens["refresh_token"]
    assert set(tokens["scope"].split()) == {"chat:read", "chat:write", "offline_access"}
    denv.advance(20)
    assert error_of(await poll(denv, code)) == "invalid_grant"  # once
    # The refresh token works like any other.
    refreshed = await denv.token({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                                  "client_id": "tv"})
    assert refreshed.status == 200
    # The approval is a remembered consent.
    assert await denv.store.get_consent("alice", "tv") == frozenset({"chat:read", "chat:write", "offline_access"})


async def test_denied(denv: Env) -> None:
    grant = await start(denv)
    await sign_in(denv)
    done = await decide(denv, await enter_code(denv, grant["user_code"]), "deny")
    assert b"denied" in done.body
    assert error_of(await poll(denv, grant["device_code"])) == "access_denied"
    denv.advance(10)
    assert error_of(await poll(denv, grant["device_code"])) == "access_denied"


async def test_expired(denv: Env) -> None:
    grant = await start(denv)
    denv.advance(601)
    assert error_of(await poll(denv, grant["device_code"])) == "expired_token"
    await sign_in(denv)
    late = await enter_code(denv, grant["user_code"])
    assert late.status == 400 and b"not valid" in late.body


async def test_unknown_device_code_and_missing_parameter(denv: Env) -> None:
    assert error_of(await poll(denv, "no-such-code")) == "invalid_grant"
    resp = await denv.token({"grant_type": DEVICE_GRANT, "client_id": "tv"})
    assert error_of(resp) == "invalid_request"
    # An app without the grant may not poll.
    resp = await denv.token({"grant_type": DEVICE_GRANT, "device_code": "x", "client_id": "spa"})
    assert resp.status == 400 and body_json(resp)["error"] == "unauthorized_client"


async def test_concurrent_polls_get_the_tokens_once(denv: Env) -> None:
    grant = await start(denv)
    await sign_in(denv)
    await decide(denv, await enter_code(denv, grant["user_code"]), "allow")
    denv.advance(10)
    results: list[int] = []

    async def one() -> None:
        results.append((await poll(denv, grant["device_code"])).status)

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(one)
    assert sorted(results) == [200] + [400] * 5


async def test_arriving_with_the_code_then_signing_in(denv: Env) -> None:
    grant = await start(denv)
    resp = await denv.get("/device", {"user_code": grant["user_code"]})
    assert resp.status == 200 and b'value="login"' in resp.body
    fields = hidden_fields(resp)
    assert fields["user_code"] == grant["user_code"]
    consent = await denv.post("/device", fields | {"username": "alice", "password": "alice-password"})
    assert consent.status == 200 and b'value="consent"' in consent.body
    # Signed in now: the link alone goes straight to the consent page.
    again = await denv.get("/device", {"user_code": grant["user_code"]})
    assert b'value="consent"' in again.body
    await decide(denv, consent, "allow")
    denv.advance(10)
    assert (await poll(denv, grant["device_code"])).status == 200


async def test_consent_needs_its_csrf_token_bound_to_its_code(denv: Env) -> None:
    first, second = await start(denv), await start(denv)
    await sign_in(denv)
    consent = await enter_code(denv, first["user_code"])
    fields = hidden_fields(consent) | {"decision": "allow"}
    # No token, a forged one, or the first request's token for the second code.
    for bad in ({"csrf_token": ""}, {"csrf_token": "1.abc"}, {"user_code": second["user_code"]}):
        resp = await denv.post("/device", fields | bad)
        assert resp.status == 403, bad
    # Another browser (no binding cookie) with the right fields.
    other = await denv.request("POST", "/device", body=urlencode(fields).encode(),
                               headers=[("content-type", "application/x-www-form-urlencoded")], cookies=False)
    assert other.status == 200 and b'value="login"' in other.body  # not signed in there: the form, nothing decided
    assert error_of(await poll(denv, second["device_code"])) == "authorization_pending"
    assert error_of(await poll(denv, first["device_code"])) == "authorization_pending"
    # The code form needs its token too.
    resp = await denv.post("/device", {"action": "code", "user_code": first["user_code"], "csrf_token": "x"})
    assert resp.status == 403


async def test_user_code_guessing_is_limited_per_address(denv: Env) -> None:
    grant = await start(denv)
    await sign_in(denv)
    for n in range(10):  # [oauth] user_code_rate = "10/m"
        resp = await enter_code(denv, f"BCDF-GHJ{'KLMNPQRSTV'[n]}")
        assert resp.status == 400 and b"not valid" in resp.body
    resp = await enter_code(denv, grant["user_code"])  # even the right code
    assert resp.status == 429 and header(resp, "retry-after") and b"Too many" in resp.body
    denv.address = "198.51.100.99"  # another address is not held back
    assert (await enter_code(denv, grant["user_code"])).status == 200
    denv.address = "198.51.100.7"
    denv.advance(7)  # one try back at 10 per minute
    assert (await enter_code(denv, grant["user_code"])).status == 200


async def test_valid_codes_do_not_count_against_the_limit(denv: Env) -> None:
    grant = await start(denv)
    await sign_in(denv)
    for _ in range(15):
        assert (await enter_code(denv, grant["user_code"])).status == 200


async def test_the_device_page_sends_the_stylesheet_by_hash_only(denv: Env) -> None:
    resp = await denv.get("/device")
    csp = header(resp, "content-security-policy")
    assert "style-src 'sha256-" in csp and "unsafe-inline" not in csp and "script-src" not in csp
    assert b"<script" not in resp.body


@pytest.mark.parametrize("value", ['"fast"', '"0/m"', "5"])
def test_bad_user_code_rate_names_file_line_and_key(tmp_path: Path, value: str) -> None:
    conf = write_conf(tmp_path)
    line = f"user_code_rate = {value}"
    text = conf.read_text().replace('users = "users.json"\n', f'users = "users.json"\n{line}\n')
    conf.write_text(text)
    lineno = text.splitlines().index(line) + 1
    with pytest.raises(ConfigError) as info:
        load_settings(conf)
    assert f"realtime.toml:{lineno}: oauth.user_code_rate" in str(info.value)


def test_user_code_rate_default_and_value(tmp_path: Path) -> None:
    conf = write_conf(tmp_path)
    assert load_settings(conf).oauth.user_code_rate == "10/m"
    conf.write_text(conf.read_text().replace('users = "users.json"\n', 'users = "users.json"\nuser_code_rate = "3/m"\n'))
    assert load_settings(conf).oauth.user_code_rate == "3/m"


async def test_box_confidential_client(denv: Env) -> None:
    grant = await start(denv, "box", "profile")
    await sign_in(denv)
    await decide(denv, await enter_code(denv, grant["user_code"]), "allow")
    denv.advance(10)
    resp = await poll(denv, grant["device_code"], "box")
    assert resp.status == 200 and body_json(resp)["refresh_token"]
    wrong = await denv.token({"grant_type": DEVICE_GRANT, "device_code": grant["device_code"]},
                             auth=("box", WEB_SECRET + "x"))
    assert wrong.status == 401


async def test_device_requests_are_limited_per_address(denv: Env) -> None:
    for _ in range(30):
        await start(denv)
    resp = await denv.post("/oauth2/device_authorization", {"client_id": "tv"})
    assert resp.status == 429 and body_json(resp)["error"] == "slow_down" and header(resp, "retry-after") == "1"
    denv.address = "203.0.113.5"
    assert (await denv.post("/oauth2/device_authorization", {"client_id": "tv"})).status == 200
    denv.address = "198.51.100.7"
    denv.advance(1)
    assert (await denv.post("/oauth2/device_authorization", {"client_id": "tv"})).status == 200
