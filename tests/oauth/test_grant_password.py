"""password grant: only for apps that list it; throttled (RFC 6749 §4.3)."""

from __future__ import annotations

import logging
from typing import Any

from tests.helpers.oauth import PASSWORDS, PW_SECRET, SVC_SECRET, Env, body_json, header

AUTH = ("pw", PW_SECRET)


def pw(user: str, password: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "password", "username": user, "password": password, **extra}


async def test_password_grant(env: Env) -> None:
    resp = await env.token(pw("alice", PASSWORDS["alice"]), auth=AUTH)
    assert resp.status == 200
    body = body_json(resp)
    assert body["scope"] == "chat:read chat:write" and body["refresh_token"]
    resp = await env.token({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, auth=AUTH)
    assert resp.status == 200


async def test_scope_intersection_with_user(env: Env) -> None:
    resp = await env.token(pw("bob", PASSWORDS["bob"], scope="chat:read chat:write"), auth=AUTH)
    assert resp.status == 200 and body_json(resp)["scope"] == "chat:read"


async def test_scope_outside_app(env: Env) -> None:
    resp = await env.token(pw("alice", PASSWORDS["alice"], scope="profile"), auth=AUTH)
    assert resp.status == 400 and body_json(resp)["error"] == "invalid_scope"


async def test_wrong_password_unknown_user_disabled_user(env: Env) -> None:
    for user, password in (("alice", "bad"), ("ghost", "bad"), ("dave", PASSWORDS["dave"])):
        resp = await env.token(pw(user, password), auth=AUTH)
        assert resp.status == 400 and body_json(resp)["error"] == "invalid_grant", user
        assert b"bad" not in resp.body


async def test_not_for_apps_that_do_not_list_it(env: Env) -> None:
    resp = await env.token(pw("alice", PASSWORDS["alice"]), auth=("svc", SVC_SECRET))
    assert resp.status == 400 and body_json(resp)["error"] == "unauthorized_client"


async def test_brute_force_is_throttled(env: Env) -> None:
    for _ in range(5):
        resp = await env.token(pw("alice", "guess"), auth=AUTH)
        assert resp.status == 400
    resp = await env.token(pw("alice", PASSWORDS["alice"]), auth=AUTH)
    assert resp.status == 429 and body_json(resp)["error"] == "invalid_grant"
    assert int(header(resp, "retry-after")) >= 1


async def test_missing_fields(env: Env) -> None:
    resp = await env.token({"grant_type": "password", "username": "alice"}, auth=AUTH)
    assert body_json(resp)["error"] == "invalid_request"


async def test_failed_password_grant_is_logged_without_the_password(env: Env, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="realtime.oauth")
    await env.token(pw("alice", "Hunter2-secret-guess"), auth=AUTH)
    await env.token(pw("ghost", "Hunter2-secret-guess"), auth=AUTH)
    lines = [r.getMessage() for r in caplog.records if "failed login" in r.getMessage()]
    assert len(lines) == 2
    assert all("password grant" in line and "client_id=pw" in line and f"address={env.address}" in line
               for line in lines)
    assert "user='alice'" in lines[0] and "user='ghost'" in lines[1]
    assert "Hunter2" not in caplog.text
    # A success logs no failure.
    caplog.clear()
    await env.token(pw("bob", PASSWORDS["bob"]), auth=AUTH)
    assert "failed login" not in caplog.text
