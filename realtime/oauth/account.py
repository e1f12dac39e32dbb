"""``/account``: the apps a user granted, and withdrawing them (SPEC §10).

``GET /account`` lists every app with a remembered consent or a live
refresh family, with its scopes, when it was granted and how many live
connections it has on this node.  ``POST /account/revoke`` (CSRF token,
``client_id``, or ``all=1``) withdraws the grant in one store
transaction (consent, refresh families, and the access tokens they,
codes and device codes issued, which go to the revoked table), then
marks each access token revoked through the application's
``revoke_access``: that closes its sockets with 4003 here and, with a
Redis broker, on every node.  Sockets of the user and app on this node
whose token the store never recorded (a ``password`` grant without a
refresh token) are closed with 4003 too.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from realtime.hub import Hub
from realtime.hub import admin as hub_admin
from realtime.http import pages
from realtime.http.request import Request
from realtime.http.responses import Response, redirect
from realtime.oauth.services import OAuthApp
from realtime.oauth.signed_in import BrowserPage
from realtime.protocol.close import CloseCode

from realtime.tokens.revoked import cutoff_keep_until

log = logging.getLogger("realtime.oauth.account")

ACCOUNT_PATH = "/account"
REVOKE_PATH = "/account/revoke"
REVOKE = "account-revoke"


class AccountApp(OAuthApp, Protocol):
    """The application object as the account page reads it: the OAuth
    part plus the hub, for the live connections."""

    hub: Hub


def live_connections(hub: Hub, sub: str, client_id: str | None) -> list:
    return [c for c in hub.connections.by_sub(sub) if client_id is None or c.client_id == client_id]


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


async def _listing(page: BrowserPage, state: AccountApp, sub: str) -> list[tuple[str, str, list[str], str, int]]:
    store = page.services.store
    granted: dict[str, tuple[frozenset[str], float]] = {
        client_id: (scope, at) for client_id, scope, at in await store.list_consents(sub)
    }
    for client_id, _family, created in await store.live_families_of(sub, page.now):
        if client_id not in granted:  # a grant without a remembered consent (password grant)
            granted[client_id] = (frozenset(), created)
    rows = []
    for client_id in sorted(granted):
        scope, at = granted[client_id]
        app = page.settings.apps.get(client_id)
        rows.append((client_id, app.name if app else client_id, sorted(scope), _when(at),
                     len(live_connections(state.hub, sub, client_id))))
    return rows


async def account_endpoint(request: Request, state: AccountApp) -> Response:
    """GET/POST /account (POST: the sign-in form)."""
    page = BrowserPage(request, state, ACCOUNT_PATH, "your account")
    try:
        if request.method == "POST":
            form = page.form()
            if form is None:
                return page.error(400, "Invalid request", "The form could not be read.")
            if form.get("action") != "login":
                return page.error(400, "Invalid request", "Unknown action.")
            signed_in = await page.sign_in(form, {})
            if isinstance(signed_in, Response):
                return signed_in
            return redirect(ACCOUNT_PATH, 303).with_headers(*page.set_cookies)
        current = await page.current()
        if current is None:
            return page.login_form()
        user, session = current
        notice = {"1": "Access withdrawn.", "all": "Signed out everywhere."}.get(
            (request.query.get("done") or [""])[0])
        hidden = {"csrf_token": page.csrf(REVOKE, session.sid, target=REVOKE_PATH)}
        html = pages.account_page(user=user.display_name or user.name, apps=await _listing(page, state, user.name),
                                  hidden=hidden, notice=notice, form_action=REVOKE_PATH)
        return page.page(200, html)  # no-store, as every page
    except Exception as exc:  # noqa: BLE001 - answered by its kind
        return page.failure(log, "account page", exc)


async def cut_off(state: AccountApp, sub: str, client_id: str, now: float) -> None:
    """Refuse every token of ``sub`` for ``client_id`` (``""``: every app)
    issued before ``now``, also those the store never recorded (a
    ``password`` grant without a refresh token, a ticket made from one):
    the same durable cut-off as ``POST /api/revoke``, kept in the store,
    applied here, kept in the broker for nodes away, and run on every other
    node (which close their sockets of those tokens with 4003)."""
    keep = cutoff_keep_until(state.settings.key_retire_after, now)
    await state.oauth.store.add_cutoff(sub, client_id, now, keep, now)
    state.revoked.cut(sub, client_id, now)
    await hub_admin.share_cutoff(state.hub, sub, client_id, now, keep)
    await hub_admin.ask_others(state.hub, "revoke", {"sub": sub, "client_id": client_id, "issued_before": now})


async def revoke_endpoint(request: Request, state: AccountApp) -> Response:
    """POST /account/revoke: withdraw one app (``client_id``) or all (``all=1``)."""
    page = BrowserPage(request, state, REVOKE_PATH, "your account")
    try:
        form = page.form()
        if form is None:
            return page.error(400, "Invalid request", "The form could not be read.")
        current = await page.current()
        if current is None:
            return redirect(ACCOUNT_PATH, 303)
        user, session = current
        if not page.csrf_ok(form.get("csrf_token"), REVOKE, session.sid):
            return page.error(403, "Request refused", "The form has expired or was not sent by this browser.")
        everything = form.get("all") == "1"
        client_id = None if everything else form.get("client_id")
        if not everything and not client_id:
            return page.error(400, "Invalid request", "Name the app to withdraw.")
        pairs = await page.services.store.withdraw_grant(user.name, client_id, page.now)
        for jti, exp in pairs:
            state.revoke_access(jti, exp)  # 4003 here and, through the broker, on every node
        await cut_off(state, user.name, client_id or "", page.now)
        for conn in live_connections(state.hub, user.name, client_id):
            conn.withdraw(CloseCode.REVOKED, "access withdrawn")  # tokens the store never recorded
        log.info("access withdrawn (user=%s, client_id=%s, tokens=%d)", user.name, client_id or "*", len(pairs))
        return redirect(f"{ACCOUNT_PATH}?done={'all' if everything else '1'}", 303)
    except Exception as exc:  # noqa: BLE001 - answered by its kind
        return page.failure(log, "account revoke", exc)
