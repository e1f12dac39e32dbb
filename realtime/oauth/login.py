"""The password check behind every login form (OAuth 2 and OAuth 1.0a).

One place for the rules a login must follow, so the two flows cannot
drift apart: bounded input, per-user and per-address throttling with
``Retry-After``, argon2 verification in a worker thread (a dummy hash for
unknown users, so timing does not reveal who exists), disabled users
refused, and a log line that names the client and address but never the
password.
"""

from __future__ import annotations

import logging
from typing import Mapping

import attrs

from realtime.http.request import Request
from realtime.oauth.errors import retry_after_value
from realtime.oauth.services import OAuthServices
from realtime.config.settings import User

log = logging.getLogger("realtime.oauth.login")

MAX_USERNAME = 256
MAX_PASSWORD = 1024


@attrs.frozen
class LoginRefused:
    """Show the login form again with this status, message and headers."""

    status: int
    message: str
    username: str = ""
    headers: tuple[tuple[str, str], ...] = ()


async def check_password(
    services: OAuthServices,
    users: Mapping[str, User],
    request: Request,
    form: Mapping[str, str],
    now: float,
    *,
    client_id: str,
    protocol: str = "oauth2",
) -> User | LoginRefused:
    username = form.get("username", "")
    secret = form.get("password", "")
    if not username or not secret or len(username) > MAX_USERNAME or len(secret) > MAX_PASSWORD:
        return LoginRefused(400, "Enter your user name and password.", username[:MAX_USERNAME])
    throttle = services.throttle
    address = request.client_host or "-"
    wait = throttle.retry_after(username, address, now)
    if wait > 0:
        return LoginRefused(429, "Too many failed attempts. Try again later.", username,
                            (("retry-after", retry_after_value(wait)),))
    user = users.get(username)
    ok = await services.hasher.verify(user.password_hash if user else None, secret)
    if not ok or user is None or user.disabled:
        throttle.failed(username, address, now)
        log.info("failed login (%s, client_id=%s, address=%s)", protocol, client_id, address)
        return LoginRefused(400, "Invalid user name or password.", username)
    return user
