"""The password check behind every login form (OAuth 2 and OAuth 1.0a).

One place for the rules a login must follow, so the two flows cannot
drift apart: bounded input, per-user and per-address throttling with
``Retry-After``, argon2 verification in a worker thread (a dummy hash for
unknown users, so timing does not reveal who exists), disabled users
refused, and a log line that names the client, address and user name but
never the password.
"""

from __future__ import annotations

import logging
from typing import Mapping

import attrs

from realtime.http.request import Request
from realtime.oauth.errors import retry_after_value
from realtime.oauth.offload import OffloadBusy
from realtime.oauth.services import OAuthServices
from realtime.config.settings import User
from realtime.config.users import MAX_PASSWORD_LENGTH

log = logging.getLogger("realtime.oauth.login")

MAX_USERNAME = 256


@attrs.frozen
class LoginRefused:
    """Show the login form again with this status, message and headers."""

    status: int
    message: str
    username: str = ""
    headers: tuple[tuple[str, str], ...] = ()


def log_failed_login(protocol: str, client_id: str, address: str, username: str) -> None:
    """One line per failed password check: who tried which name, from
    where, through which client; never the password."""
    log.info("failed login (%s, client_id=%s, address=%s, user=%r)",
             protocol, client_id, address, username[:64])


async def check_password(
    services: OAuthServices,
    users: Mapping[str, User],
    request: Request,
    form: Mapping[str, str],
    *,
    client_id: str,
    protocol: str = "oauth2",
) -> User | LoginRefused:
    """The user a login form's name and password identify, or how to show
    the form again.  The throttle reads the clock itself when it charges,
    so time spent queued for argon2 is no refill."""
    username = form.get("username", "")
    secret = form.get("password", "")
    if not username or not secret or len(username) > MAX_USERNAME or len(secret) > MAX_PASSWORD_LENGTH:
        return LoginRefused(400, "Enter your user name and password.", username[:MAX_USERNAME])
    result = await verify_login(services, users, username, secret, request.client_host or "-")
    if isinstance(result, Throttled):
        return LoginRefused(429, "Too many failed attempts. Try again later.", username,
                            (("retry-after", retry_after_value(result.retry_after)),))
    if isinstance(result, Busy):
        return LoginRefused(503, "The server is busy. Please try again in a moment.", username,
                            (("retry-after", retry_after_value(result.retry_after)),))
    if result is None:
        log_failed_login(protocol, client_id, request.client_host or "-", username)
        return LoginRefused(400, "Invalid user name or password.", username)
    return result


@attrs.frozen
class Throttled:
    retry_after: float


@attrs.frozen
class Busy:
    retry_after: float


async def verify_login(services: OAuthServices, users: Mapping[str, User], username: str,
                       secret: str, address: str) -> User | Throttled | Busy | None:
    """The throttled password check shared by the login forms and the
    ``password`` grant: the user, or None for a wrong name or password.

    One try is reserved from the throttle *before* argon2 and refunded on
    success, so concurrent guesses cannot all be checked
    against a bucket none of them has charged yet.
    """
    throttle = services.throttle
    wait = throttle.reserve(username, address, services.clock())
    if wait > 0:
        return Throttled(wait)
    user = users.get(username)
    try:
        ok = await services.hasher.verify(user.password_hash if user else None, secret)
    except OffloadBusy as exc:
        throttle.refund(username, address, services.clock())  # never checked
        return Busy(exc.retry_after)
    if not ok or user is None or user.disabled:
        return None
    throttle.refund(username, address, services.clock())
    return user
