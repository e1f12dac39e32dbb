"""An external OAuth 2 provider for sign-in tests: a realtime server (P)
with an app registered for our callbacks and a user with a password, the
provider definition file that points at it, and P's login and consent
pages driven like a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import httpx

from realtime.config.settings import App, Settings, User
from tests.helpers.oauth import CHEAP, hidden

PROVIDER_SECRET = "provider-client-secret-" + "s" * 16
PROVIDER_USER, PROVIDER_PASSWORD = "alice", "alice-at-provider"


def provider_settings(make_settings: Callable[..., Settings], state_dir: Path, callbacks: tuple[str, ...]) -> Settings:
    """P: plain HTTP, the app ``realtime-login`` allowed to come back to ``callbacks``."""
    return make_settings(
        server={"state_dir": state_dir, "public_url": "https://provider.test", "https": None},
        apps={"realtime-login": App(name="Realtime chat", client_id="realtime-login",
                                    client_secret_hash=CHEAP.hash(PROVIDER_SECRET), redirect_uris=callbacks,
                                    scopes=("profile", "email"))},
        users={PROVIDER_USER: User(name=PROVIDER_USER, password_hash=CHEAP.hash(PROVIDER_PASSWORD),
                                   scopes=("profile", "email"), display_name="Alice P.",
                                   email="alice@provider.test")},
    )


def provider_definition(name: str, host: str, **extra: Any) -> dict[str, Any]:
    """A ``providers/NAME.json`` for P at ``host`` (``client_secret_env`` unless overridden)."""
    profile = {
        "name": name, "display_name": f"{name.title()} account", "oauth_version": "2.0", "host": host,
        "authorize_path": "/oauth2/authorize", "token_path": "/oauth2/token", "resource_host": host,
        "oauth2_scope": "profile email", "oauth2_bearer": "{AccessToken}", "getProfileInfo": "/oauth2/userinfo",
        "ProfileIdVariable": "sub", "TokenExpiresVariable": "expires_in", "TemplateDisplayName": "{display_name}",
        "accessFromRefreshTokenUrl": f"{host}/oauth2/token", "client_id": "realtime-login",
        "default_scopes": ["chat:read", "chat:write"], "auto_create": True,
    }
    profile.update(extra)
    return {"profile": {k: v for k, v in profile.items() if v is not None}}


async def sign_in_at_provider(p_browser: httpx.AsyncClient, authorize_url: str) -> str:
    """At P, with ``p_browser`` (its own cookie jar): log in and allow; the
    URL P sends the browser back to (our callback)."""
    page = await p_browser.get(authorize_url)
    if page.status_code == 302:
        return page.headers["location"]  # signed in and consented before
    assert page.status_code == 200 and 'value="login"' in page.text, page.text
    form = hidden(page.text) | {"action": "login", "username": PROVIDER_USER, "password": PROVIDER_PASSWORD}
    page = await p_browser.post(authorize_url.split("?")[0], data=form)
    if page.status_code == 200 and 'value="consent"' in page.text:
        page = await p_browser.post(authorize_url.split("?")[0],
                                    data=hidden(page.text) | {"action": "consent", "decision": "allow"})
    assert page.status_code == 302, page.text
    return page.headers["location"]
