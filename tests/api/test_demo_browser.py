"""The /demo/ page in a real headless Chromium (Debian's ``chromium``).

Log in through the real login and consent pages (PKCE S256 in the
browser), chat between two pages, let 5-second tokens pass at least twice
with the socket still open, receive a notification sent with
``/api/publish``, and reconnect with ``since`` after a network loss and a
4001 with nothing missed.  Bad input on the way: a wrong password, a
denied consent, a tampered ``state``.

The browser is launched by path; a missing browser is a failure that says
how to install it, never a skip.  Playwright's sync API runs in a worker
thread (it has its own event loop) while the server runs in this trio run.
"""

from __future__ import annotations

import os
import re
import socket
import textwrap
from pathlib import Path
from typing import Any, Callable

import attrs
import pytest
import trio

from realtime.config.load import ConfigError, default_settings, load_settings
from realtime.oauth.passwords import hash_secret
from realtime.config.settings import Addr, App, Settings, User
from realtime.tokens.keyring import issue_access_token
from realtime.protocol.close import CloseCode
from tests.helpers.browser import TIMEOUT_MS, launch_chromium, need_browser
from tests.helpers.server import Running

ROOT = Path(__file__).resolve().parents[2]
# The screenshot in docs/ is refreshed on request (REALTIME_SCREENSHOT=1);
# otherwise it goes to a temp file so a test run leaves the tree clean.
SCREENSHOT_DOC = ROOT / "docs" / "demo-after-refresh.png"
PASSWORDS = {"alice": "alice-pass-1234", "bob": "bob-pass-5678"}

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    base = make_settings(websocket={"expiry_warning": 3.0})
    users = dict(base.users)
    for name, password in PASSWORDS.items():
        users[name] = User(name=name, password_hash=hash_secret(password), scopes=("chat:read", "chat:write"))
    return attrs.evolve(base, users=users, demo=attrs.evolve(base.demo, enabled=True))


def demo_app(origin: str) -> App:
    """Like conf/apps.toml's "demo" app, registered for this server's origin."""
    return App(name="Demo", client_id="demo", public=True, redirect_uris=(origin + "/demo/callback",),
               grant_types=("authorization_code", "refresh_token"),
               scopes=("chat:read", "chat:write", "offline_access"), access_token_ttl=5.0)


# -- [demo] in realtime.toml -------------------------------------------------


def _load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "realtime.toml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_settings(path)


def test_demo_config_defaults_off_and_parses(tmp_path: Path) -> None:
    assert Settings().demo.enabled is False
    assert default_settings().demo.enabled is False
    assert _load(tmp_path, "[server]\nstate_dir = 'var'\n").demo.enabled is False
    assert _load(tmp_path, "[demo]\nenabled = true\n").demo.enabled is True
    # The example config ships with the demo on.
    assert load_settings(ROOT / "conf" / "realtime.toml").demo.enabled is True


def test_demo_config_errors_name_file_line_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, """
            [server]
            state_dir = "var"

            [demo]
            enabled = "yes"
            enabeld = true
            """)
    found = {(i.line, i.key) for i in info.value.issues}
    assert found == {(5, "demo.enabled"), (6, "demo.enabeld")}, [str(i) for i in info.value.issues]
    text = str(info.value)
    assert "realtime.toml:5: demo.enabled:" in text
    assert "did you mean 'enabled'" in text


async def test_demo_disabled_is_404(start_server: Any, settings: Settings) -> None:
    import httpx

    running = await start_server(attrs.evolve(settings, demo=attrs.evolve(settings.demo, enabled=False)))
    async with httpx.AsyncClient() as http:
        for path in ("/demo/", "/demo/app.js", "/demo/callback", "/demo", "/demo/lib/realtime.js"):
            assert (await http.get(running.url(path))).status_code == 404, path
        # A reload that turns it on takes effect without a restart.
        running.state.settings = attrs.evolve(running.state.settings, demo=attrs.evolve(settings.demo, enabled=True))
        page = await http.get(running.url("/demo/"))
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "connect-src 'self'" in page.headers["content-security-policy"]
        assert '<script type="module" src="/demo/app.js"' in page.text
        js = await http.get(running.url("/demo/app.js"))
        assert js.headers["content-type"].startswith("text/javascript")
        # The page runs on the client library, served from the same origin.
        assert 'from "./lib/realtime.js"' in js.text
        for name in ("realtime.js", "pkce.js", "transports.js"):
            lib = await http.get(running.url("/demo/lib/" + name))
            assert lib.status_code == 200 and lib.headers["content-type"].startswith("text/javascript"), name
        assert "code_challenge_method" in (await http.get(running.url("/demo/lib/pkce.js"))).text


@pytest.fixture
def sync_api() -> Any:
    return need_browser()


async def test_demo_in_chromium(sync_api: Any, nursery: trio.Nursery, settings: Settings, tmp_path: Path) -> None:
    # Bind once to learn a free port, then run on it for good: the page's
    # origin (and so its redirect URI) must survive the restart below.
    probe = await Running.start(nursery, attrs.evolve(settings, server=attrs.evolve(settings.server, https=None)))
    port = probe.server.bound.http.port
    probe.stop()
    await probe.stopped.wait()
    origin = f"http://127.0.0.1:{port}"
    settings = attrs.evolve(settings, apps={**settings.apps, "demo": demo_app(origin)},
                            server=attrs.evolve(settings.server, http=Addr("127.0.0.1", port), https=None))
    servers = [await Running.start(nursery, settings)]
    state = servers[0].server.state
    assert state is not None
    notify_token, _ = issue_access_token(state.keyring, issuer=settings.issuer, audience=settings.audience,
                                         sub="chat-app", client_id="chat-app", scope=["notify"], ttl=600)

    async def restart() -> None:
        """Stop the server (every socket gets 1001) and start it again on
        the same port and state dir: keys and refresh tokens survive,
        in-memory channel history does not."""
        running = servers[-1]
        running.stop()
        await running.stopped.wait()
        servers.append(await Running.start(nursery, settings))

    def cut_alice(code: int, text: str) -> None:
        """Runs in the trio thread: drop alice's sockets, then publish while
        they are going, so the message can only come by `since` replay."""
        for conn in state.hub.connections.by_sub("alice"):
            conn.withdraw(code, "test")
        state.hub.publish("chat:lobby", {"text": text}, from_sub="bob", scopes=frozenset({"chat:write"}))

    def scenario() -> None:
        run_browser(sync_api, origin, notify_token,
                    lambda code, text: trio.from_thread.run_sync(cut_alice, code, text),
                    lambda: trio.from_thread.run(restart),
                    SCREENSHOT_DOC if os.environ.get("REALTIME_SCREENSHOT") else tmp_path / "demo-after-refresh.png")

    try:
        await trio.to_thread.run_sync(scenario)
    finally:
        servers[-1].stop()


def run_browser(sync_api: Any, origin: str, notify_token: str, cut_alice: Callable[[int, str], None],
                restart: Callable[[], None], shot: Path) -> None:
    import httpx

    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            alice = browser.new_context().new_page()
            bob = browser.new_context().new_page()
            for page in (alice, bob):
                page.set_default_timeout(TIMEOUT_MS)
                page.on("pageerror", lambda exc: errors.append(str(exc)))

            # -- alice: a wrong password, then the right one, then consent.
            alice.goto(origin + "/demo/")
            expect(alice.locator("#notice")).to_contain_text("Sign in to chat")
            alice.click("#login")
            expect(alice.locator("h1")).to_contain_text("Sign in to continue to Demo")
            alice.fill("#username", "alice")
            alice.fill("#password", "not-the-password")
            alice.click("button[type=submit]")
            expect(alice.locator(".error")).to_contain_text("Invalid user name or password")
            alice.fill("#password", PASSWORDS["alice"])
            alice.click("button[type=submit]")
            expect(alice.locator("h1")).to_contain_text("Demo wants to access your account")
            expect(alice.locator("main")).to_contain_text("offline_access")
            alice.click("button[value=allow]")
            expect(alice.locator("#conn")).to_have_attribute("data-state", "open")
            expect(alice.locator("#who")).to_have_text("signed in as alice")
            assert alice.url == origin + "/demo/", "the code must leave the address bar"

            # -- bob: denies first; then a tampered state; then signs in.
            bob.goto(origin + "/demo/")
            bob.click("#login")
            bob.fill("#username", "bob")
            bob.fill("#password", PASSWORDS["bob"])
            bob.click("button[type=submit]")
            bob.click("button[value=deny]")
            expect(bob.locator("#notice")).to_contain_text("You denied access")
            expect(bob.locator("#login")).to_be_visible()

            bob.click("#login")
            bob.wait_for_url(re.compile(r".*/oauth2/authorize\?.*"))
            tampered = re.sub(r"state=[^&]+", "state=forged-by-someone", bob.url)
            bob.goto(tampered)
            bob.click("button[value=allow]")  # still signed in: straight to consent
            expect(bob.locator("#notice")).to_contain_text("state parameter differs")
            expect(bob.locator("#conn")).to_have_attribute("data-state", "idle")

            # The consent is remembered, but Demo is a public client with a
            # loopback redirect: RFC 8252 §8.6, it is asked again.
            bob.click("#login")
            bob.click("button[value=allow]")
            expect(bob.locator("#conn")).to_have_attribute("data-state", "open")
            expect(bob.locator("#who")).to_have_text("signed in as bob")

            # -- chat both ways, with the sender shown.
            alice.fill("#text", "hello bob")
            alice.press("#text", "Enter")
            expect(bob.locator("#messages li").filter(has_text="hello bob")).to_contain_text("alice:")
            bob.fill("#text", "hi alice")
            bob.press("#text", "Enter")
            expect(alice.locator("#messages li").filter(has_text="hi alice")).to_contain_text("bob:")

            # -- 5 s tokens: at least two in-band refreshes on one socket.
            expect(alice.locator("#refreshes")).to_have_text(re.compile(r"^([2-9]|\d\d+)$"), timeout=40_000)
            st = alice.evaluate("window.rtDemo.state")
            assert st["open"] and st["connects"] == 1 and st["lastClose"] is None, st
            expect(alice.locator("#token-left")).to_contain_text("token expires in")
            alice.fill("#text", "still connected after two refreshes")
            alice.press("#text", "Enter")
            expect(bob.locator("#messages")).to_contain_text("still connected after two refreshes")
            alice.click("#log-box summary")  # show the refreshes in the event log
            shot.parent.mkdir(exist_ok=True)
            alice.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000

            # -- a notification through POST /api/publish to user:alice.
            resp = httpx.post(origin + "/api/publish", headers={"authorization": f"Bearer {notify_token}"},
                              json={"channel": "user:alice", "data": {"text": "your report is ready"}})
            assert resp.status_code == 200 and resp.json()["delivered"] == 1, resp.text
            expect(alice.locator("#notifications")).to_contain_text("your report is ready")
            expect(bob.locator("#notifications")).not_to_contain_text("your report is ready")

            # -- a network loss, then a 4001: reconnect with since, no gap, no duplicate.
            for n, (code, text) in enumerate([(CloseCode.ABORT, "sent while the network was down"),
                                              (4001, "sent while the token had expired")], start=2):
                cut_alice(code, text)
                expect(alice.locator("#messages li").filter(has_text=text)).to_have_count(1)
                expect(alice.locator("#connects")).to_have_text(str(n))
                expect(alice.locator("#conn")).to_have_attribute("data-state", "open")
                st = alice.evaluate("window.rtDemo.state")
                assert st["gaps"] == 0, st
            expect(alice.locator("#notice")).to_contain_text("Reconnected")
            texts = alice.locator("#messages li .text").all_inner_texts()
            assert len(texts) == len(set(texts)), texts

            # -- a server restart: both pages say so, come back by themselves
            # (refresh tokens live in the state store), and report that the
            # history the old process kept in memory is gone.
            restart()
            for page in (alice, bob):
                expect(page.locator("#connects")).to_have_text("4" if page is alice else "2")
                expect(page.locator("#conn")).to_have_attribute("data-state", "open")
                expect(page.locator("#notice")).to_contain_text("could not be recovered")
            alice.fill("#text", "after the restart")
            alice.press("#text", "Enter")
            expect(bob.locator("#messages li").filter(has_text="after the restart")).to_contain_text("alice:")
            assert errors == [], errors
        finally:
            browser.close()


# -- ?ws= names a path on this origin only ----------------------


async def test_demo_ws_parameter_cannot_point_the_socket_elsewhere(
        sync_api: Any, nursery: trio.Nursery, settings: Settings) -> None:
    probe = await Running.start(nursery, attrs.evolve(settings, server=attrs.evolve(settings.server, https=None)))
    port = probe.server.bound.http.port
    probe.stop()
    await probe.stopped.wait()
    origin = f"http://127.0.0.1:{port}"
    settings = attrs.evolve(settings, apps={**settings.apps, "demo": demo_app(origin)},
                            server=attrs.evolve(settings.server, http=Addr("127.0.0.1", port), https=None))
    running = await Running.start(nursery, settings)
    # Where a hostile link would send the socket (and its bearer token): a
    # listener on another address, which must never see a connection.
    decoy = socket.socket()
    decoy.bind(("127.0.0.2", 0))
    decoy.listen(8)
    decoy.setblocking(False)
    decoy_port = decoy.getsockname()[1]
    hostile = [f"@127.0.0.2:{decoy_port}/", f"//127.0.0.2:{decoy_port}/", f"/\\127.0.0.2:{decoy_port}/"]
    try:
        urls = await trio.to_thread.run_sync(check_ws_parameter, sync_api, origin, hostile)
        with pytest.raises(BlockingIOError):  # nothing ever connected to it
            decoy.accept()
    finally:
        decoy.close()
        running.stop()
    assert urls == [f"ws://127.0.0.1:{port}/ws"] * (1 + len(hostile)), urls


def check_ws_parameter(sync_api: Any, origin: str, hostile: list[str]) -> list[str]:
    """Sign alice in, then reload the tab with each hostile ``?ws=``: the
    page must connect to its own /ws each time.  Returns every socket URL."""
    from urllib.parse import quote

    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    urls: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("websocket", lambda ws: urls.append(ws.url))
            page.goto(origin + "/demo/")
            page.click("#login")
            page.fill("#username", "alice")
            page.fill("#password", PASSWORDS["alice"])
            page.click("button[type=submit]")
            page.click("button[value=allow]")
            expect(page.locator("#conn")).to_have_attribute("data-state", "open")
            for n, value in enumerate(hostile, start=2):
                # A reload of this tab: the refresh token signs it in again.
                page.goto(origin + "/demo/?ws=" + quote(value, safe=""))
                expect(page.locator("#conn")).to_have_attribute("data-state", "open")
                assert len(urls) == n, urls
        finally:
            browser.close()
    return urls


# -- ?transport=sse: the same page over Server-Sent Events ------------------


async def test_demo_over_sse_in_chromium(sync_api: Any, nursery: trio.Nursery, settings: Settings) -> None:
    """``?transport=sse``: the page signs in, connects with a ticket and
    Chromium's own EventSource (no WebSocket at all), receives a message
    sent with ``/api/publish`` and sends one, under the page's CSP.  Then
    a second page whose WebSocket handshake fails ends on SSE by itself."""
    probe = await Running.start(nursery, attrs.evolve(settings, server=attrs.evolve(settings.server, https=None)))
    port = probe.server.bound.http.port
    probe.stop()
    await probe.stopped.wait()
    origin = f"http://127.0.0.1:{port}"
    settings = attrs.evolve(settings, apps={**settings.apps, "demo": demo_app(origin)},
                            server=attrs.evolve(settings.server, http=Addr("127.0.0.1", port), https=None))
    running = await Running.start(nursery, settings)
    state = running.server.state
    assert state is not None
    app_token, _ = issue_access_token(state.keyring, issuer=settings.issuer, audience=settings.audience,
                                      sub="chat-app", client_id="chat-app", scope=["chat:write"], ttl=600)
    try:
        seen = await trio.to_thread.run_sync(run_sse_browser, sync_api, origin, app_token)
    finally:
        running.stop()
    sse = [u for u in seen["requests"] if u.startswith(origin + "/sse?")]
    assert sse and all("ticket=" in u and "access_token" not in u for u in sse), seen
    assert any("channel=chat%3Alobby" in u for u in sse), sse
    assert [u for u in seen["websockets"] if not u.endswith("/no-websocket-here")] == [], seen
    assert origin + "/api/ticket" in seen["requests"], seen


def run_sse_browser(sync_api: Any, origin: str, app_token: str) -> dict[str, list[str]]:
    import httpx

    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    errors: list[str] = []
    requests: list[str] = []
    websockets: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # A CSP refusal is only a console message: count those as errors too.
            page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
            page.on("request", lambda req: requests.append(req.url))
            page.on("websocket", lambda ws: websockets.append(ws.url))
            page.goto(origin + "/demo/?transport=sse")
            page.click("#login")
            page.fill("#username", "alice")
            page.fill("#password", PASSWORDS["alice"])
            page.click("button[type=submit]")
            page.click("button[value=allow]")
            expect(page.locator("#conn")).to_have_attribute("data-state", "open")
            expect(page.locator("#who")).to_have_text("signed in as alice")
            st = page.evaluate("window.rtDemo.state")
            assert st["transport"] == "sse" and st["open"], st
            # Both channels joined (one reopened stream): wait until the lobby is live.
            page.wait_for_function("window.rtDemo.state.lastSeq['chat:lobby'] !== undefined")

            resp = httpx.post(origin + "/api/publish", headers={"authorization": f"Bearer {app_token}"},
                              json={"channel": "chat:lobby", "data": {"text": "hello over sse"}})
            assert resp.status_code == 200 and resp.json()["delivered"] == 1, resp.text
            expect(page.locator("#messages li").filter(has_text="hello over sse")).to_contain_text("chat-app")

            page.fill("#text", "sent from the sse page")
            page.press("#text", "Enter")
            expect(page.locator("#messages li").filter(has_text="sent from the sse page")).to_contain_text("alice:")
            st = page.evaluate("window.rtDemo.state")
            assert st["lastSeq"]["chat:lobby"] == 2 and st["connects"] == 1 and st["gaps"] == 0, st

            # Without ?transport: the WebSocket first; where its handshake
            # fails (here a path with no WebSocket behind it), SSE after two tries.
            other = browser.new_context().new_page()
            other.set_default_timeout(TIMEOUT_MS)
            other.on("pageerror", lambda exc: errors.append(str(exc)))
            other.goto(origin + "/demo/")
            other.click("#login")
            other.fill("#username", "alice")
            other.fill("#password", PASSWORDS["alice"])
            other.click("button[type=submit]")
            other.click("button[value=allow]")
            expect(other.locator("#conn")).to_have_attribute("data-state", "open")
            assert other.evaluate("window.rtDemo.state")["transport"] == "websocket"
            # A reload of the tab (its refresh token signs it in again) with a
            # socket path that refuses the upgrade.
            other.on("websocket", lambda ws: websockets.append(ws.url))
            other.goto(origin + "/demo/?ws=/no-websocket-here")
            expect(other.locator("#conn")).to_have_attribute("data-state", "open")
            st = other.evaluate("window.rtDemo.state")
            assert st["transport"] == "sse", st
            assert len(websockets) == 2 and all(u.endswith("/no-websocket-here") for u in websockets), websockets
            other.wait_for_function("window.rtDemo.state.lastSeq['chat:lobby'] === 2")  # since 0: the history
            other.fill("#text", "after the fallback")
            other.press("#text", "Enter")
            expect(page.locator("#messages li").filter(has_text="after the fallback")).to_contain_text("alice:")
            assert errors == [], errors
        finally:
            browser.close()
    return {"requests": requests, "websockets": websockets}
