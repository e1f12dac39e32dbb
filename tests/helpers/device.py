"""The device authorization grant (RFC 8628) as tests drive it through
:class:`tests.helpers.oauth.Env`: apps that may use it, a device's
request, and a person approving it at ``/device``."""

from __future__ import annotations

import attrs

from realtime.config.settings import App, Settings, User
from realtime.http.responses import Response
from tests.helpers.oauth import PASSWORDS, WEB_SECRET, Env, body_json, hidden, hidden_fields

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


def device_settings(base: Settings, password: str) -> Settings:
    """``base`` (the make_settings fixture's) with alice's password and the
    public device app ``tv`` (``offline_access`` allowed)."""
    from realtime.oauth.passwords import hash_secret

    users = dict(base.users)
    users["alice"] = User(name="alice", password_hash=hash_secret(password), scopes=("chat:read", "chat:write"),
                          display_name="Alice Liddell")
    apps = dict(base.apps)
    apps["tv"] = App(name="Living-room TV", client_id="tv", public=True, grant_types=(DEVICE_GRANT, "refresh_token"),
                     scopes=("chat:read", "chat:write", "offline_access"))
    return attrs.evolve(base, users=users, apps=apps)


async def approve_over_http(origin: str, user_code: str, password: str, decision: str = "allow",
                            user: str = "alice") -> str:
    """A person at /device with a plain HTTP client: arrive with the code,
    sign in, allow or deny; the final page's text."""
    import httpx

    async with httpx.AsyncClient(base_url=origin) as browser:
        page = await browser.get("/device", params={"user_code": user_code})
        assert page.status_code == 200 and 'value="login"' in page.text, page.text
        consent = await browser.post("/device", data=hidden(page.text) | {"username": user, "password": password})
        assert consent.status_code == 200 and 'value="consent"' in consent.text, consent.text
        done = await browser.post("/device", data=hidden(consent.text) | {"decision": decision})
        assert done.status_code == 200, done.text
        return done.text
