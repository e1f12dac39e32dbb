"""An external OAuth 2 provider for sign-in tests: a realtime server (P)
with an app registered for our callbacks and a user with a password, the
provider definition file that points at it, and P's login and consent
pages driven like a browser; and the config and apps file of the site
under test (S) that signs its users in through P."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import httpx

from realtime.config.settings import App, Settings, User
from tests.helpers.oauth import CHEAP, hidden
from tests.helpers.server import server_config

PROVIDER_SECRET = "provider-client-secret-" + "s" * 16
PROVIDER_USER, PROVIDER_PASSWORD = "alice", "alice-at-provider"

#: S's public URL; a test sends requests for it to S's listener, as a reverse proxy would.
SITE_PUBLIC = "https://localhost"
#: S's realtime.toml: plain HTTP behind SITE_PUBLIC, providers in providers/.
SITE_CONFIG = server_config(
    server='https = ""\n', public_url=SITE_PUBLIC, shutdown_grace="2s", oauth='providers = "providers/"\n')
#: S's apps.toml: the public client "chat".
SITE_APPS = """
[[app]]
name = "Chat"
client_id = "chat"
public = true
redirect_uris = ["http://127.0.0.1/cb"]
scopes = ["chat:read", "chat:write"]
"""


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
    """A ``providers/NAME.json`` for P at ``host``; ``extra`` adds or overrides
    keys (the client secret among them: ``client_secret_env`` or
    ``client_secret_file``), and a key given as None is left out."""
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
