"""The device and account pages in a real headless Chromium (Debian's
``chromium``, launched by path through Playwright; missing: a failure
that says what to install, never a skip).

A device asks for a code at the real device authorization endpoint; the
person opens ``verification_uri_complete``, signs in, sees the consent
page and allows; the device's poll of the real token endpoint gets the
tokens, and a WebSocket opened with them is live.  On ``/account`` the
app is listed with one live connection; Withdraw closes that socket with
4003 and the app leaves the list.

With ``REALTIME_SCREENSHOT=1`` the pages (login, consent, device,
account) are saved to ``docs/``; otherwise to a temp dir, so a test run
leaves the tree clean.  Playwright's sync API runs in a worker thread
(it has its own event loop) while the server runs in this trio run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from realtime.client import Endpoint, poll_for_tokens, request_device_code
from realtime.config.settings import Settings
from realtime.protocol.close import CloseCode
from tests.helpers.device import device_settings
from tests.helpers.browser import TIMEOUT_MS, launch_chromium, need_browser
from tests.helpers.server import Running
from tests.helpers.tokens import bearer

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "alice-pass-1234"
SHOTS = ("login", "consent", "device", "account")

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return device_settings(make_settings(server={"https": None}), PASSWORD)


def shot_path(tmp_path: Path, name: str) -> Path:
    folder = ROOT / "docs" if os.environ.get("REALTIME_SCREENSHOT") else tmp_path
    return folder / f"page-{name}.png"


def approve_in_browser(sync_api: Any, origin: str, grant: dict, tmp_path: Path) -> Any:
    """Sign in at verification_uri_complete, look at the consent page, allow.

    Returns the browser's storage state (its cookies) for the second part.
    """
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            context = browser.new_context(viewport={"width": 900, "height": 720})
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            complete = grant["verification_uri_complete"].replace("https://localhost", origin)
            page.goto(complete)
            expect(page.locator("h1")).to_contain_text("Sign in to continue to connect a device")
            page.fill("#username", "alice")
            page.screenshot(path=str(shot_path(tmp_path, "login")), full_page=True)
            page.fill("#password", "wrong-password-0")
            page.click("button[type=submit]")
            expect(page.locator(".error")).to_contain_text("Invalid user name or password")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_contain_text("Living-room TV wants to access your account")
            expect(page.locator(".code")).to_have_text(grant["user_code"])
            page.screenshot(path=str(shot_path(tmp_path, "consent")), full_page=True)
            page.click("button[value=allow]")
            expect(page.locator("h1")).to_have_text("Device connected")
            # The code form, as someone with a second device sees it.
            page.goto(origin + "/device")
            expect(page.locator("h1")).to_have_text("Connect a device")
            page.fill("#user_code", "bcdf-ghjk")
            page.click("button[type=submit]")
            expect(page.locator(".error")).to_contain_text("That code is not valid")
            page.screenshot(path=str(shot_path(tmp_path, "device")), full_page=True)
            return context.storage_state()
        finally:
            browser.close()


def withdraw_in_browser(sync_api: Any, origin: str, storage: Any, tmp_path: Path,
                        socket_closed: Callable[[], int]) -> int:
    """On /account: the app with its live connection; Withdraw; the close code."""
    expect = sync_api.expect
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            context = browser.new_context(viewport={"width": 900, "height": 720}, storage_state=storage)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(origin + "/account")
            row = page.locator("tr", has_text="Living-room TV")
            expect(row).to_contain_text("chat:read")
            expect(row.locator("td").nth(3)).to_have_text("1")  # live connections
            page.screenshot(path=str(shot_path(tmp_path, "account")), full_page=True)
            row.locator("button", has_text="Withdraw").click()
            expect(page.locator(".notice")).to_have_text("Access withdrawn.")
            expect(page.locator("main")).not_to_contain_text("Living-room TV")
            return socket_closed()
        finally:
            browser.close()


async def test_device_flow_and_account_page_in_chromium(nursery: trio.Nursery, settings: Settings,
                                                        tmp_path: Path) -> None:
    sync_api = need_browser()
    running = await Running.start(nursery, settings)
    origin = running.url("").rstrip("/")
    endpoint = Endpoint(origin, "tv")
    code = await request_device_code(endpoint, "chat:read")
    grant = {"user_code": code.user_code, "verification_uri_complete": code.verification_uri_complete}
    tokens: dict[str, Any] = {}
    got_tokens = trio.Event()

    async def device() -> None:
        """The device: polls the real token endpoint every 5 s until allowed."""
        tokens.update(await poll_for_tokens(endpoint, code))
        got_tokens.set()

    nursery.start_soon(device)
    storage = await trio.to_thread.run_sync(approve_in_browser, sync_api, origin, grant, tmp_path)
    with trio.fail_after(30):
        await got_tokens.wait()

    closed = trio.Event()
    close_code: list[int] = []

    async def hold_socket(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with open_websocket_url(running.url("/ws", "ws"), extra_headers=bearer(tokens["access_token"])) as ws:
            assert '"welcome"' in await ws.get_message()
            task_status.started()
            try:
                while True:
                    await ws.get_message()
            except ConnectionClosed as exc:
                close_code.append(exc.reason.code)
                closed.set()

    await nursery.start(hold_socket)

    def socket_closed() -> int:
        trio.from_thread.run(closed.wait)
        return close_code[0]

    code_seen = await trio.to_thread.run_sync(withdraw_in_browser, sync_api, origin, storage, tmp_path,
                                              socket_closed)
    assert code_seen == CloseCode.REVOKED == 4003
    for name in SHOTS:
        assert shot_path(tmp_path, name).stat().st_size > 10_000
    running.stop()
