"""``/device``: where a person signs in, types the code their device
shows (or follows ``verification_uri_complete``), and allows or denies
(RFC 8628 §3.3).

Every form carries a CSRF token; the consent form's token is bound to
the session and to the user code, so a page for one request cannot
approve another.  Wrong user codes are limited per address ([oauth]
``user_code_rate``, RFC 8628 §5.1: "the authorization server SHOULD
rate-limit user-code verification attempts"): a try is reserved before
the lookup and given back when the code is valid, so only failures
count.
"""

from __future__ import annotations

import logging

from realtime.config.settings import App, User
from realtime.http import pages
from realtime.http.request import Request
from realtime.http.responses import Response
from realtime.oauth.common import grant_scopes
from realtime.oauth.device import (
    DEVICE_GRANT, DEVICE_PATH, display_user_code, normalize_user_code, same_hash, user_code_hash,
)
from realtime.oauth.errors import OAuthError, retry_after_value
from realtime.oauth.services import OAuthApp, Session
from realtime.oauth.signed_in import BrowserPage
from realtime.store.devices import PENDING, DeviceRecord


log = logging.getLogger("realtime.oauth.device")

CODE = "device-code"
CONSENT = "device-consent"
MAX_CODE_INPUT = 40


class _CodeRefused(Exception):
    def __init__(self, status: int, message: str, *headers: tuple[str, str]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


async def _lookup(page: BrowserPage, typed: str) -> tuple[str, DeviceRecord, App]:
    """The pending request of a typed user code, throttled per address."""
    throttle = page.services.user_code_throttle
    address = page.request.client_host or "-"
    wait = throttle.retry_after(address, page.services.clock())
    if wait > 0:
        raise _CodeRefused(429, "Too many wrong codes. Try again later.", ("retry-after", retry_after_value(wait)))
    throttle.spend(address, page.services.clock())  # reserved before the lookup; refunded when valid
    code = normalize_user_code(typed[:MAX_CODE_INPUT])
    record = None
    if code is not None:
        wanted = user_code_hash(code)
        record = await page.services.store.get_device_by_user_code(wanted)
        if record is not None and not same_hash(record.user_hash, wanted):
            record = None
    app = page.settings.apps.get(record.client_id) if record is not None else None
    if (code is None or record is None or app is None or record.status != PENDING
            or record.expires_at <= page.now or DEVICE_GRANT not in app.grant_types):
        log.info("wrong user code (address=%s)", address)
        raise _CodeRefused(400, "That code is not valid. Check the code on your device and try again.")
    throttle.give_back(address, page.services.clock())
    return code, record, app


def _code_form(page: BrowserPage, user: User, session: Session, *, status: int = 200,
               error: str | None = None, typed: str = "", headers: tuple[tuple[str, str], ...] = ()) -> Response:
    hidden = {"csrf_token": page.csrf(CODE, session.sid)}
    html = pages.device_code_page(user=user.display_name or user.name, hidden=hidden, error=error,
                                  code=typed[:MAX_CODE_INPUT], form_action=DEVICE_PATH)
    return page.page(status, html, *headers)


async def _show_consent(page: BrowserPage, user: User, session: Session, typed: str) -> Response:
    try:
        code, record, app = await _lookup(page, typed)
        granted = grant_scopes(record.scope, app, user)
    except _CodeRefused as exc:
        return _code_form(page, user, session, status=exc.status, error=exc.message, typed=typed,
                          headers=exc.headers)
    except OAuthError:  # the app's scopes changed since the request
        return _code_form(page, user, session, status=400, error="That request can no longer be approved.")
    shown = display_user_code(code)
    hidden = {"user_code": shown, "csrf_token": page.csrf(CONSENT, session.sid, user_code_hash(code))}
    html = pages.consent_page(app_name=app.name, user=user.display_name or user.name, scopes=granted,
                              hidden=hidden, redirect_host=None, form_action=DEVICE_PATH, user_code=shown)
    return page.page(200, html)


async def _decide(page: BrowserPage, user: User, session: Session, form: dict[str, str]) -> Response:
    code = normalize_user_code(form.get("user_code", "")[:MAX_CODE_INPUT])
    if code is None or not page.csrf_ok(form.get("csrf_token"), CONSENT, session.sid, user_code_hash(code)):
        return page.error(403, "Request refused", "The form has expired or was not sent by this browser.")
    decision = form.get("decision")
    if decision not in ("allow", "deny"):
        return page.error(400, "Invalid request", "Choose Allow or Deny.")
    record = await page.services.store.get_device_by_user_code(user_code_hash(code))
    app = page.settings.apps.get(record.client_id) if record is not None else None
    if record is None or app is None:
        return _code_form(page, user, session, status=400, error="That request is no longer valid.")
    try:
        granted = grant_scopes(record.scope, app, user)
    except OAuthError:
        return _code_form(page, user, session, status=400, error="That request can no longer be approved.")
    approved = decision == "allow"
    if not await page.services.store.decide_device_code(user_code_hash(code), sub=user.name, approved=approved,
                                                        scope=granted, now=page.now):
        return _code_form(page, user, session, status=400,
                          error="That request was already answered or has expired.")
    if approved:
        await page.services.store.save_consent(user.name, app.client_id, granted, page.now)
    log.info("device request %s (client_id=%s, user=%s)", "approved" if approved else "denied",
             app.client_id, user.name)
    return page.page(200, pages.device_done_page(approved=approved, app_name=app.name))


async def device_page_endpoint(request: Request, state: OAuthApp) -> Response:
    """GET/POST /device."""
    page = BrowserPage(request, state, DEVICE_PATH, "connect a device")
    try:
        if request.method != "POST":
            typed = (request.query.get("user_code") or [""])[0][:MAX_CODE_INPUT]
            current = await page.current()
            if current is None:
                return page.login_form(keep={"user_code": typed} if typed else None)
            user, session = current
            if typed:
                return await _show_consent(page, user, session, typed)
            return _code_form(page, user, session)
        form = page.form()
        if form is None:
            return page.error(400, "Invalid request", "The form could not be read.")
        typed = form.get("user_code", "")[:MAX_CODE_INPUT]
        action = form.get("action")
        if action == "login":
            signed_in = await page.sign_in(form, {"user_code": typed} if typed else {})
            if isinstance(signed_in, Response):
                return signed_in
            user, session = signed_in
            if typed:
                return await _show_consent(page, user, session, typed)
            return _code_form(page, user, session)
        current = await page.current()
        if current is None:
            return page.login_form(error="Please sign in again.", keep={"user_code": typed} if typed else None)
        user, session = current
        if action == "code":
            if not page.csrf_ok(form.get("csrf_token"), CODE, session.sid):
                return _code_form(page, user, session, status=403, error="The form has expired. Please try again.")
            return await _show_consent(page, user, session, typed)
        if action == "consent":
            return await _decide(page, user, session, form)
        return page.error(400, "Invalid request", "Unknown action.")
    except Exception as exc:  # noqa: BLE001 - answered by its kind
        return page.failure(log, "device page", exc)
