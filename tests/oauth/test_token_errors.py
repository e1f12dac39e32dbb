"""Bad requests at the token endpoint: each gets its RFC 6749 §5.2 error."""

from __future__ import annotations

from urllib.parse import urlencode

from tests.helpers.oauth import SVC_SECRET, Env, basic, body_json, header

AUTH_HEADER = ("authorization", basic("svc", SVC_SECRET))


async def test_wrong_content_type(env: Env) -> None:
    resp = await env.post("/oauth2/token", {"grant_type": "client_credentials"}, auth=("svc", SVC_SECRET),
                          content_type="application/json")
    assert resp.status == 400 and body_json(resp)["error"] == "invalid_request"
    assert header(resp, "cache-control") == "no-store"


async def test_repeated_parameter(env: Env) -> None:
    body = urlencode([("grant_type", "client_credentials"), ("scope", "notify"), ("scope", "chat:write")])
    resp = await env.request("POST", "/oauth2/token", body=body.encode(), headers=[
        ("content-type", "application/x-www-form-urlencoded"), AUTH_HEADER])
    assert resp.status == 400 and body_json(resp)["error"] == "invalid_request"


async def test_missing_and_unknown_grant_type(env: Env) -> None:
    resp = await env.token({}, auth=("svc", SVC_SECRET))
    assert body_json(resp)["error"] == "invalid_request"
    resp = await env.token({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}, auth=("svc", SVC_SECRET))
    assert resp.status == 400 and body_json(resp)["error"] == "unsupported_grant_type"
    # Known since issue 19, but svc does not list it.
    resp = await env.token({"grant_type": "urn:ietf:params:oauth:grant-type:device_code"}, auth=("svc", SVC_SECRET))
    assert resp.status == 400 and body_json(resp)["error"] == "unauthorized_client"
    resp = await env.token({"grant_type": "implicit"}, auth=("svc", SVC_SECRET))
    assert body_json(resp)["error"] == "unsupported_grant_type"


async def test_huge_body(env: Env) -> None:
    body = b"grant_type=client_credentials&scope=" + b"a" * (1024 * 1024)
    resp = await env.request("POST", "/oauth2/token", body=body, headers=[
        ("content-type", "application/x-www-form-urlencoded"), AUTH_HEADER])
    assert resp.status == 400 and body_json(resp)["error"] == "invalid_request"


async def test_many_parameters(env: Env) -> None:
    body = "&".join(f"p{n}=1" for n in range(500)).encode()
    resp = await env.request("POST", "/oauth2/token", body=body, headers=[
        ("content-type", "application/x-www-form-urlencoded"), AUTH_HEADER])
    assert resp.status == 400 and body_json(resp)["error"] == "invalid_request"


async def test_not_utf8(env: Env) -> None:
    resp = await env.request("POST", "/oauth2/token", body=b"grant_type=\xff\xfe", headers=[
        ("content-type", "application/x-www-form-urlencoded"), AUTH_HEADER])
    assert resp.status == 400 and body_json(resp)["error"] == "invalid_request"


async def test_get_is_405(env: Env) -> None:
    resp = await env.get("/oauth2/token")
    assert resp.status == 405


async def test_content_type_with_charset_is_fine(env: Env) -> None:
    resp = await env.post("/oauth2/token", {"grant_type": "client_credentials"}, auth=("svc", SVC_SECRET),
                          content_type="application/x-www-form-urlencoded; charset=UTF-8")
    assert resp.status == 200


async def test_malformed_scope(env: Env) -> None:
    resp = await env.token({"grant_type": "client_credentials", "scope": 'no"tify'}, auth=("svc", SVC_SECRET))
    assert body_json(resp)["error"] == "invalid_scope"
