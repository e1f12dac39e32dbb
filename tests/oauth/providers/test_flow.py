"""Sign in through an external provider, end to end with two real servers.

P is a realtime server acting as the external provider (an app registered
for our callbacks, users with passwords).  S is the server under test,
loaded from real files, whose ``providers/`` directory points at P's
plain-http loopback URL.  A browser is played by two httpx clients (one
cookie jar per site), following redirects by hand; S's public URL is
``https://localhost``, so a redirect to it is sent to S's listener, as a
reverse proxy would.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import attrs
import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from realtime.config.load import load_settings
from realtime.oauth import pkce
from realtime.config.settings import Settings
from tests.helpers.provider import (PROVIDER_PASSWORD, PROVIDER_SECRET, SITE_APPS, SITE_CONFIG, SITE_PUBLIC,
                                    provider_definition, provider_settings)
from tests.helpers.server import Running
from tests.helpers.ws import loads
from tests.helpers.oauth import hidden_fields, new_pkce

PUBLIC = SITE_PUBLIC
CLIENT_CB = "http://127.0.0.1/cb"


def definition(name: str, host: str, **extra: Any) -> dict[str, Any]:
    """P's definition with its secret in ``$CORP_TEST_SECRET`` unless ``extra`` says otherwise."""
    return provider_definition(name, host, **{"client_secret_env": "CORP_TEST_SECRET", **extra})


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@attrs.define
class Sites:
    p: Running
    s: Running
    root: Path
    hang: list[int]

    @property
    def users_file(self) -> Path:
        return self.root / "users.json"

    def stored_users(self) -> dict[str, dict[str, Any]]:
        return {u["name"]: u for u in json.loads(self.users_file.read_text())["users"]}


async def _hanging_server(nursery: trio.Nursery) -> int:
    """Accepts and reads, never answers: a provider that times out."""
    async def handler(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    listeners = await nursery.start(lambda task_status: trio.serve_tcp(
        handler, 0, host="127.0.0.1", task_status=task_status))
    return listeners[0].socket.getsockname()[1]


@pytest.fixture
async def sites(tmp_path: Path, start_server: Callable[..., Any], make_settings: Callable[..., Settings],
                monkeypatch: pytest.MonkeyPatch, nursery: trio.Nursery) -> Sites:
    callbacks = tuple(f"{PUBLIC}/oauth2/callback/{n}" for n in ("corp", "linked", "wrongsecret", "noprofile"))
    p = await start_server(provider_settings(make_settings, tmp_path / "p-state", callbacks))
    root = tmp_path / "s"
    (root / "providers").mkdir(parents=True)
    (root / "realtime.toml").write_text(SITE_CONFIG)
    (root / "apps.toml").write_text(SITE_APPS)
    (root / "users.json").write_text(json.dumps({"users": [
        {"name": "local", "scopes": ["chat:read"]},
    ]}, indent=2))
    (root / "linked.secret").write_text(PROVIDER_SECRET + "\n")
    p_url = p.url("").rstrip("/")
    hang = [await _hanging_server(nursery)]
    defs = {
        "corp": definition("corp", p_url),
        "linked": definition("linked", p_url, auto_create=False, client_secret_env=None,
                             client_secret_file="../linked.secret",
                             token_endpoint_auth_method="client_secret_post"),
        "wrongsecret": definition("wrongsecret", p_url, client_secret_env="WRONG_TEST_SECRET"),
        "noprofile": definition("noprofile", p_url, getProfileInfo="/oauth2/no-such-profile"),
        "down": definition("down", f"http://127.0.0.1:{closed_port()}"),
        "slow": definition("slow", f"http://127.0.0.1:{hang[0]}", timeout="300ms"),
    }
    for name, body in defs.items():
        (root / "providers" / f"{name}.json").write_text(json.dumps(body, indent=2))
    monkeypatch.setenv("CORP_TEST_SECRET", PROVIDER_SECRET)
    monkeypatch.setenv("WRONG_TEST_SECRET", "not-the-secret")
    s = await start_server(load_settings(root / "realtime.toml"))
    return Sites(p, s, root, hang)


class Browser:
    """One browser: a cookie jar per site, redirects followed by hand."""

    def __init__(self, sites: Sites) -> None:
        self.sites = sites
        self.jars = {"p": httpx.AsyncClient(), "s": httpx.AsyncClient()}

    async def aclose(self) -> None:
        for client in self.jars.values():
            await client.aclose()

    def _route(self, url: str) -> tuple[httpx.AsyncClient, str]:
        parts = urlsplit(url)
        if url.startswith(PUBLIC + "/"):  # S's public URL: to S's listener
            target = self.sites.s.url(parts.path) + ("?" + parts.query if parts.query else "")
            return self.jars["s"], target
        if parts.port == self.sites.p.http.port:
            return self.jars["p"], url
        if parts.port == self.sites.s.http.port:
            return self.jars["s"], url
        raise AssertionError(f"the browser does not know where {url} is")

    async def get(self, url: str) -> httpx.Response:
        client, target = self._route(url)
        return await client.get(target)

    async def post(self, url: str, form: dict[str, str]) -> httpx.Response:
        client, target = self._route(url)
        return await client.post(target, data=form)

    async def follow(self, response: httpx.Response) -> httpx.Response:
        assert response.status_code in (302, 303), (response.status_code, response.text)
        return await self.get(response.headers["location"])


def fields_of(response: httpx.Response) -> dict[str, str]:
    return hidden_fields(SimpleNamespace(body=response.content))  # type: ignore[arg-type]


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
async def browser(sites: Sites) -> Any:
    b = Browser(sites)
    yield b
    await b.aclose()


async def start_at_s(browser: Browser, provider: str, challenge: str, state: str = "client-state") -> httpx.Response:
    """The client sends the user to S; the user picks "Log in with <provider>"."""
    params = {"response_type": "code", "client_id": "chat", "redirect_uri": CLIENT_CB,
              "scope": "chat:read chat:write", "state": state, "code_challenge": challenge,
              "code_challenge_method": "S256"}
    page = await browser.get(browser.sites.s.url("/oauth2/authorize?" + urlencode(params)))
    assert page.status_code == 200
    assert f"Log in with {provider.title()} account" in page.text
    form = fields_of(page)
    form.update(action="provider", provider=provider)
    return await browser.post(browser.sites.s.url("/oauth2/authorize"), form)


async def sign_in_at_p(browser: Browser, to_p: httpx.Response, decision: str = "allow") -> httpx.Response:
    """At P: log in, answer the consent page; P's redirect back to S."""
    page = await browser.follow(to_p)
    if page.status_code == 302 and decision == "allow":
        return page  # signed in at P already, consent remembered there
    assert page.status_code == 200 and 'value="login"' in page.text
    form = fields_of(page)
    form.update(action="login", username="alice", password=PROVIDER_PASSWORD)
    consent = await browser.post(browser.sites.p.url("/oauth2/authorize"), form)
    if consent.status_code == 302 and decision == "allow":
        return consent  # P remembers the consent from an earlier login
    assert consent.status_code == 200 and "Realtime chat" in consent.text
    form = fields_of(consent)
    form.update(action="consent", decision=decision)
    back = await browser.post(browser.sites.p.url("/oauth2/authorize"), form)
    assert back.status_code == 302
    return back


async def test_login_through_provider_then_token_and_websocket(sites: Sites, browser: Browser) -> None:
    p = new_pkce()
    to_p = await start_at_s(browser, "corp", p.challenge)
    assert to_p.status_code == 302
    location = to_p.headers["location"]
    assert location.startswith(sites.p.url("/oauth2/authorize?"))
    asked = query_of(location)
    assert asked["client_id"] == "realtime-login" and asked["response_type"] == "code"
    assert asked["redirect_uri"] == f"{PUBLIC}/oauth2/callback/corp"
    assert asked["code_challenge_method"] == "S256" and pkce.valid_challenge(asked["code_challenge"])
    assert asked["scope"] == "profile email" and len(asked["state"]) >= 32

    back = await sign_in_at_p(browser, to_p)
    assert back.headers["location"].startswith(f"{PUBLIC}/oauth2/callback/corp?")
    consent = await browser.follow(back)  # S: exchange, profile, user, then our consent page
    assert consent.status_code == 200, consent.text
    assert "Signed in as <strong>Alice P.</strong>" in consent.text and "chat:write" in consent.text
    assert "rt_session" in browser.jars["s"].cookies

    created = sites.stored_users()["corp:alice"]
    assert created == {"name": "corp:alice", "scopes": ["chat:read", "chat:write"],
                       "display_name": "Alice P.", "email": "alice@provider.test"}
    assert sites.stored_users()["local"]["scopes"] == ["chat:read"]  # the rest of the file is kept

    form = fields_of(consent)
    form.update(action="consent", decision="allow")
    done = await browser.post(sites.s.url("/oauth2/authorize"), form)
    assert done.status_code == 302 and done.headers["location"].startswith(CLIENT_CB + "?")
    result = query_of(done.headers["location"])
    assert result["state"] == "client-state"

    async with httpx.AsyncClient() as client:
        token = await client.post(sites.s.url("/oauth2/token"), data={
            "grant_type": "authorization_code", "code": result["code"], "redirect_uri": CLIENT_CB,
            "client_id": "chat", "code_verifier": p.verifier})
        assert token.status_code == 200, token.text
        access = token.json()["access_token"]
        info = await client.get(sites.s.url("/oauth2/userinfo"), headers={"authorization": f"Bearer {access}"})
        # A chat-only token reads no profile claims (SPEC §8).
        assert info.json() == {"sub": "corp:alice", "scope": "chat:read chat:write"}
    assert token.json()["scope"] == "chat:read chat:write"

    async with open_websocket_url(sites.s.url("/ws", "ws"),
                                  extra_headers=[(b"authorization", f"Bearer {access}".encode())]) as ws:
        welcome = loads(await ws.get_message())
        assert welcome["type"] == "welcome" and welcome["sub"] == "corp:alice"
        await ws.send_message(json.dumps({"type": "subscribe", "channel": "chat:lobby", "id": 1}))
        assert loads(await ws.get_message())["type"] == "ack"

    # The users file stays valid for reload and `realtime check`; a second login links, not adds.
    assert await sites.s.server.reload("test") is True
    assert "corp:alice" in sites.s.state.settings.users
    fresh = Browser(sites)  # no session at S or P: the whole way again
    p2 = new_pkce()
    again = await sign_in_at_p(fresh, await start_at_s(fresh, "corp", p2.challenge, "second"))
    done = await fresh.follow(again)
    await fresh.aclose()
    # The consent is remembered, but "chat" is a public client with a
    # loopback redirect: RFC 8252 §8.6, it is asked again.
    assert done.status_code == 200 and "Allow" in done.text
    assert list(sites.stored_users()).count("corp:alice") == 1


async def test_used_or_unknown_state_gives_a_clear_page(sites: Sites, browser: Browser) -> None:
    bogus = await browser.get(sites.s.url("/oauth2/callback/corp?code=abc&state=not-ours"))
    assert bogus.status_code == 400 and "Sign-in expired" in bogus.text
    assert "not started in this browser" in bogus.text

    p = new_pkce()
    back = await sign_in_at_p(browser, await start_at_s(browser, "corp", p.challenge))
    # Another browser (no rt_csrf cookie of ours) presenting the callback is refused...
    async with httpx.AsyncClient() as stranger:
        parts = urlsplit(back.headers["location"])
        other = await stranger.get(sites.s.url(parts.path + "?" + parts.query))
        assert other.status_code == 400 and "Sign-in expired" in other.text
    # ...and that burnt the state: it is single use, even for the right browser.
    replay = await browser.follow(back)
    assert replay.status_code == 400 and "Sign-in expired" in replay.text
    assert "corp:alice" not in sites.stored_users()


async def test_state_of_one_provider_is_not_accepted_by_another(sites: Sites, browser: Browser) -> None:
    p = new_pkce()
    back = await sign_in_at_p(browser, await start_at_s(browser, "corp", p.challenge))
    swapped = back.headers["location"].replace("/callback/corp?", "/callback/linked?")
    page = await browser.get(swapped)
    assert page.status_code == 400 and "Sign-in expired" in page.text


async def test_denied_at_the_provider(sites: Sites, browser: Browser) -> None:
    p = new_pkce()
    back = await sign_in_at_p(browser, await start_at_s(browser, "corp", p.challenge), decision="deny")
    assert query_of(back.headers["location"])["error"] == "access_denied"
    page = await browser.follow(back)
    assert page.status_code == 403 and "Sign-in cancelled" in page.text
    assert "Corp account did not let you sign in" in page.text
    assert 'href="/oauth2/authorize?' in page.text  # back to our sign-in page
    assert "corp:alice" not in sites.stored_users()


async def test_unreachable_provider(sites: Sites, browser: Browser) -> None:
    p = new_pkce()
    to_down = await start_at_s(browser, "down", p.challenge)
    assert to_down.status_code == 302
    state = query_of(to_down.headers["location"])["state"]
    page = await browser.get(f"{PUBLIC}/oauth2/callback/down?code=some-code&state={state}")
    assert page.status_code == 502 and "could not be reached" in page.text
    assert "some-code" not in page.text


async def test_provider_that_never_answers_times_out(sites: Sites, browser: Browser,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    p = new_pkce()
    to_slow = await start_at_s(browser, "slow", p.challenge)
    state = query_of(to_slow.headers["location"])["state"]
    with trio.fail_after(10):
        page = await browser.get(f"{PUBLIC}/oauth2/callback/slow?code=secret-code-123&state={state}")
    assert page.status_code == 504 and "did not answer in time" in page.text
    assert "secret-code-123" not in caplog.text and state not in caplog.text


async def test_token_error_is_a_page_and_the_secret_is_not_logged(sites: Sites, browser: Browser,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    p = new_pkce()
    back = await sign_in_at_p(browser, await start_at_s(browser, "wrongsecret", p.challenge))
    page = await browser.follow(back)
    assert page.status_code == 502 and "did not complete the sign-in" in page.text
    assert "invalid_client" in caplog.text  # the provider's error code, for the operator
    assert "not-the-secret" not in caplog.text and PROVIDER_SECRET not in caplog.text


async def test_without_auto_create_only_linked_users_get_in(sites: Sites, browser: Browser) -> None:
    p = new_pkce()
    back = await sign_in_at_p(browser, await start_at_s(browser, "linked", p.challenge))
    page = await browser.follow(back)
    assert page.status_code == 403 and "linked:alice" in page.text
    assert "linked:alice" not in sites.stored_users()

    # The operator links the user; a disabled one stays out.
    users = json.loads(sites.users_file.read_text())
    users["users"].append({"name": "linked:alice", "scopes": ["chat:read"], "disabled": True})
    sites.users_file.write_text(json.dumps(users))
    assert await sites.s.server.reload("test") is True
    back = await sign_in_at_p(browser, await start_at_s(browser, "linked", p.challenge))
    page = await browser.follow(back)
    assert page.status_code == 403 and "disabled" in page.text

    users["users"][-1]["disabled"] = False
    sites.users_file.write_text(json.dumps(users))
    assert await sites.s.server.reload("test") is True
    back = await sign_in_at_p(browser, await start_at_s(browser, "linked", p.challenge))
    consent = await browser.follow(back)  # client_secret_post from a secret file
    assert consent.status_code == 200 and "Signed in as" in consent.text
    assert "<code>chat:read</code>" in consent.text  # the operator's scopes, not the provider's defaults
    assert "<code>chat:write</code>" not in consent.text


async def test_login_page_csp_allows_the_providers(sites: Sites, browser: Browser) -> None:
    params = {"response_type": "code", "client_id": "chat", "redirect_uri": CLIENT_CB,
              "code_challenge": new_pkce().challenge, "code_challenge_method": "S256"}
    page = await browser.get(sites.s.url("/oauth2/authorize?" + urlencode(params)))
    csp = page.headers["content-security-policy"]
    assert f"form-action 'self' http://127.0.0.1 {sites.p.url('').rstrip('/')}" in csp
    for label in ("Corp account", "Linked account", "Down account", "Slow account"):
        assert f"Log in with {label}" in page.text


async def test_unknown_provider_callback(sites: Sites, browser: Browser) -> None:
    page = await browser.get(sites.s.url("/oauth2/callback/nobody?code=x&state=y"))
    assert page.status_code == 404 and "not configured" in page.text


async def test_profile_fetch_failure(sites: Sites, browser: Browser, caplog: pytest.LogCaptureFixture) -> None:
    p = new_pkce()
    back = await sign_in_at_p(browser, await start_at_s(browser, "noprofile", p.challenge))
    page = await browser.follow(back)
    assert page.status_code == 502 and "did not complete the sign-in" in page.text
    assert "profile endpoint answered 404" in caplog.text


async def test_head_does_not_use_up_the_state(sites: Sites, browser: Browser) -> None:
    p = new_pkce()
    back = await sign_in_at_p(browser, await start_at_s(browser, "corp", p.challenge))
    client, target = browser._route(back.headers["location"])
    assert (await client.head(target)).status_code == 200
    consent = await browser.follow(back)
    assert consent.status_code == 200 and "Signed in as" in consent.text


async def test_a_broken_definition_keeps_the_running_providers(sites: Sites, browser: Browser) -> None:
    (sites.root / "providers" / "new.json").write_text('{"profile": {"name": "new"}}')
    assert await sites.s.server.reload("test") is False
    assert any("new.json" in e and "profile.host: missing required key" in e
               for e in sites.s.state.last_reload["errors"])
    assert "corp" in sites.s.state.settings.providers
    (sites.root / "providers" / "new.json").unlink()
    (sites.root / "providers" / "down.json").unlink()
    assert await sites.s.server.reload("test") is True
    assert "down" not in sites.s.state.settings.providers


async def test_starting_provider_logins_is_rate_limited_per_address_before_any_store_write(
        sites: Sites, browser: Browser) -> None:
    """Each start stores a pending login: an address gets a burst of 10, then 429 with
    Retry-After, and the refused start wrote nothing."""
    store = sites.s.state.store.sync
    frozen = sites.s.state.oauth.clock()
    sites.s.state.oauth.clock = lambda: frozen  # no refill while the starts are sent, however slow
    for n in range(10):
        started = await start_at_s(browser, "corp", new_pkce().challenge, state=f"s{n}")
        assert started.status_code == 302, (n, started.status_code)
    assert store.provider_logins_count() == 10
    refused = await start_at_s(browser, "corp", new_pkce().challenge, state="one-too-many")
    assert refused.status_code == 429 and "Too many sign-in attempts" in refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert store.provider_logins_count() == 10
