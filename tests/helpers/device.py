"""The device authorization grant (RFC 8628) as tests drive it through
:class:`tests.helpers.oauth.Env`: apps that may use it, a device's
request, and a person approving it at ``/device``."""

from __future__ import annotations

import attrs

from realtime.config.settings import App
from realtime.http.responses import Response
from tests.helpers.oauth import PASSWORDS, WEB_SECRET, Env, body_json, hidden_fields

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def add_device_apps(env: Env) -> None:
    """``tv`` (public) and ``box`` (confidential, web's secret hash) use the device grant."""
    settings = env.state.settings
    web = settings.apps["web"]
    apps = dict(settings.apps)
    apps["tv"] = App(name="Living-room TV", client_id="tv", public=True,
                     grant_types=(DEVICE_GRANT, "refresh_token"), scopes=("chat:read", "chat:write"))
    apps["box"] = App(name="Set-top box", client_id="box", client_secret_hash=web.client_secret_hash,
                      grant_types=(DEVICE_GRANT, "refresh_token"), scopes=("chat:read", "profile"))
    env.state.settings = attrs.evolve(settings, apps=apps)


async def start(env: Env, client_id: str = "tv", scope: str | None = "chat:read") -> dict:
    data = {"client_id": client_id}
    if scope is not None:
        data["scope"] = scope
    auth = None
    if client_id == "box":
        auth, data = ("box", WEB_SECRET), {k: v for k, v in data.items() if k != "client_id"}
    resp = await env.post("/oauth2/device_authorization", data, auth=auth)
    assert resp.status == 200, resp.body
    return body_json(resp)


async def poll(env: Env, device_code: str, client_id: str = "tv") -> Response:
    data = {"grant_type": DEVICE_GRANT, "device_code": device_code}
    if client_id == "box":
        return await env.token(data, auth=("box", WEB_SECRET))
    return await env.token(data | {"client_id": client_id})


async def sign_in(env: Env, path: str = "/device", user: str = "alice") -> Response:
    """Open ``path`` and sign in with the form it shows; the page after."""
    resp = await env.get(path)
    assert resp.status == 200 and b'value="login"' in resp.body, resp.body
    fields = hidden_fields(resp) | {"action": "login", "username": user, "password": PASSWORDS[user]}
    return await env.post(path, fields)


async def enter_code(env: Env, user_code: str) -> Response:
    """Signed in at /device: type ``user_code``; the consent page (or the form again)."""
    resp = await env.get("/device")
    assert resp.status == 200 and b'value="code"' in resp.body, resp.body
    return await env.post("/device", hidden_fields(resp) | {"action": "code", "user_code": user_code})


async def decide(env: Env, consent: Response, decision: str = "allow") -> Response:
    assert consent.status == 200 and b'value="consent"' in consent.body, consent.body
    return await env.post("/device", hidden_fields(consent) | {"decision": decision})
