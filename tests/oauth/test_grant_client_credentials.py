"""client_credentials grant and client authentication (RFC 6749 §2.3, §4.4)."""

from __future__ import annotations

import attrs

from realtime.config.settings import RetiredSecret
from tests.helpers.oauth import (
    ISSUER,
    OLD_WEB_SECRET,
    SVC_SECRET,
    WEIRD_ID,
    WEIRD_SECRET,
    Env,
    basic,
    body_json,
    header,
)

CC = {"grant_type": "client_credentials"}


async def test_basic_auth(env: Env) -> None:
    resp = await env.token(CC, auth=("svc", SVC_SECRET))
    assert resp.status == 200
    body = body_json(resp)
    assert "refresh_token" not in body and body["expires_in"] == 120  # per-app TTL
    assert body["scope"] == "chat:write notify"
    claims = env.state.keyring.verify(body["access_token"], issuer=ISSUER, audience=ISSUER, leeway=5)
    assert claims.sub == "svc" and claims.client_id == "svc"


async def test_post_auth_and_scope_subset(env: Env) -> None:
    resp = await env.token({**CC, "client_id": "svc", "client_secret": SVC_SECRET, "scope": "notify"})
    assert resp.status == 200 and body_json(resp)["scope"] == "notify"


async def test_form_urlencoded_basic_credentials(env: Env) -> None:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded inside Basic."""
    resp = await env.token(CC, auth=(WEIRD_ID, WEIRD_SECRET))
    assert resp.status == 200, resp.body
    assert basic(WEIRD_ID, WEIRD_SECRET) != basic("x", "y")


async def test_scope_the_app_may_not_have(env: Env) -> None:
    resp = await env.token({**CC, "scope": "chat:read"}, auth=("svc", SVC_SECRET))
    assert resp.status == 400 and body_json(resp)["error"] == "invalid_scope"


async def test_wrong_secret_is_401_with_challenge(env: Env) -> None:
    resp = await env.token(CC, auth=("svc", "wrong"))
    assert resp.status == 401 and body_json(resp)["error"] == "invalid_client"
    assert header(resp, "www-authenticate").startswith("Basic")
    assert b"wrong" not in resp.body


async def test_wrong_secret_by_post_is_401_too(env: Env) -> None:
    resp = await env.token({**CC, "client_id": "svc", "client_secret": "wrong"})
    assert resp.status == 401 and header(resp, "www-authenticate")


async def test_unknown_client(env: Env) -> None:
    resp = await env.token(CC, auth=("ghost", "whatever"))
    assert resp.status == 401 and body_json(resp)["error"] == "invalid_client"


async def test_no_client_authentication(env: Env) -> None:
    resp = await env.token(CC)
    assert resp.status == 401 and body_json(resp)["error"] == "invalid_client"


async def test_confidential_client_without_secret(env: Env) -> None:
    resp = await env.token({**CC, "client_id": "svc"})
    assert resp.status == 401


async def test_two_methods_at_once(env: Env) -> None:
    resp = await env.token({**CC, "client_secret": SVC_SECRET}, auth=("svc", SVC_SECRET))
    assert resp.status == 400 and body_json(resp)["error"] == "invalid_request"


async def test_malformed_basic(env: Env) -> None:
    for value in ("Basic !!!", "Basic " + "bm9jb2xvbg==", "Bearer abc"):
        resp = await env.token(CC, headers=[("authorization", value)])
        assert resp.status == 401, value


async def test_public_client_may_not(env: Env) -> None:
    s = env.state.settings
    env.state.settings = attrs.evolve(s, apps={**s.apps, "spa": attrs.evolve(
        s.apps["spa"], grant_types=("authorization_code", "client_credentials"))})
    resp = await env.token({**CC, "client_id": "spa"})
    assert resp.status == 400 and body_json(resp)["error"] == "unauthorized_client"


async def test_grant_not_listed_is_unauthorized_client(env: Env) -> None:
    from tests.helpers.oauth import WEB_SECRET

    resp = await env.token(CC, auth=("web", WEB_SECRET))
    assert resp.status == 400 and body_json(resp)["error"] == "unauthorized_client"


async def test_retired_secret_valid_until_it_expires(env: Env) -> None:
    s = env.state.settings
    web = attrs.evolve(s.apps["web"], grant_types=("client_credentials",))
    env.state.settings = attrs.evolve(s, apps={**s.apps, "web": web})
    resp = await env.token(CC, auth=("web", OLD_WEB_SECRET))
    assert resp.status == 200
    # Grace over (expires_at in the past): the cached success must not count.
    expired = (RetiredSecret(web.retired_secrets[0].hash, env.now - 1),)
    env.state.settings = attrs.evolve(s, apps={**s.apps, "web": attrs.evolve(web, retired_secrets=expired)})
    resp = await env.token(CC, auth=("web", OLD_WEB_SECRET))
    assert resp.status == 401


async def test_secret_cache_invalidated_by_rotation(env: Env, hashes: dict) -> None:
    resp = await env.token(CC, auth=("svc", SVC_SECRET))
    assert resp.status == 200 and len(env.services.secret_cache) == 1
    s = env.state.settings
    env.state.settings = attrs.evolve(s, apps={**s.apps, "svc": attrs.evolve(
        s.apps["svc"], client_secret_hash=hashes["pw"])})
    resp = await env.token(CC, auth=("svc", SVC_SECRET))
    assert resp.status == 401


async def test_removed_app_is_unknown_at_once(env: Env) -> None:
    assert (await env.token(CC, auth=("svc", SVC_SECRET))).status == 200
    s = env.state.settings
    env.state.settings = attrs.evolve(s, apps={k: v for k, v in s.apps.items() if k != "svc"})
    assert (await env.token(CC, auth=("svc", SVC_SECRET))).status == 401
