"""Login, consent, a silent second authorization and RP-initiated logout
in a real headless Chromium (Debian's ``chromium``, through Playwright,
as tests/api/test_demo_browser.py drives it).  The relying party's URLs
are answered by Playwright's router, so nothing leaves 127.0.0.1."""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.helpers.oidc import ALICE_PW, OIDC_SECRET, RP_CB, RP_LOGOUT, oidc_settings
from tests.helpers.browser import TIMEOUT_MS, launch_chromium, need_browser
from tests.helpers.server import Running


pytestmark = pytest.mark.timeout(240)


def test_login_consent_silent_reauthorization_and_logout_in_chromium(make_settings: Callable[..., Any]) -> None:
    sync_api = need_browser()
    running = Running.in_thread(oidc_settings(make_settings()))
    try:
        base = running.url("")
        authorize = base + "/oauth2/authorize?" + urlencode({
            "response_type": "code", "client_id": "rp", "redirect_uri": RP_CB, "scope": "openid profile",
            "state": "st", "nonce": "nn"})
        with sync_api.sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                context = browser.new_context()
                context.route("https://rp.example/**", lambda route: route.fulfill(
                    status=200, content_type="text/html", body="<p>relying party</p>"))
                page = context.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(authorize)
                page.fill("#username", "alice")
                page.fill("#password", ALICE_PW)
                page.click("button[type=submit]")
                page.wait_for_selector("text=Allow")
                page.click("button[value=allow]")
                page.wait_for_url(RP_CB + "**")
                code = parse_qs(urlsplit(page.url).query)["code"][0]
                token = httpx.post(base + "/oauth2/token", auth=("rp", OIDC_SECRET), data={
                    "grant_type": "authorization_code", "code": code, "redirect_uri": RP_CB}).json()
                assert token["id_token"]
                cookie = next(c for c in context.cookies() if c["name"] == "rt_session")
                assert cookie["httpOnly"] and cookie["path"] == "/"

                # The session and the remembered consent cover a second request: no page.
                # (Navigated from the page, as a relying party's link would: Playwright
                # routes a redirect that a page starts, not one that goto() starts.)
                page.evaluate("url => { location.href = url }", authorize)
                page.wait_for_url(RP_CB + "**")
                assert "code=" in page.url

                # Logout without a hint: a question first, then back to the registered URI.
                page.goto(base + "/oauth2/logout?" + urlencode({
                    "client_id": "rp", "post_logout_redirect_uri": RP_LOGOUT, "state": "bye"}))
                page.wait_for_selector("text=Sign out?")
                page.click("button[value=logout]")
                page.wait_for_url(RP_LOGOUT + "**")
                assert page.url == RP_LOGOUT + "?state=bye"
                assert not [c for c in context.cookies() if c["name"] == "rt_session" and c["value"]]

                # Signed out: the next authorization asks for the password again.
                page.goto(authorize)
                page.wait_for_selector("#password")
            finally:
                browser.close()
    finally:
        running.stop()
