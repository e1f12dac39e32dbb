"""Sign in through an external OAuth 2 provider, then continue our own flow.

1. The login page offers "Log in with X" (a form posting ``action=provider``
   with the authorization request and its CSRF token).  Once the token
   checks out, :mod:`realtime.oauth.authorize` calls
   :func:`start_provider_login`, which remembers the pending request
   (:mod:`realtime.oauth.providers.pending`) under a fresh ``state`` and gives the
   provider's URL to send the browser to (RFC 6749 §4.1.1, PKCE S256 per
   RFC 7636 unless the definition says ``"pkce": false``).
2. The provider sends the browser back to ``PUBLIC_URL/oauth2/callback/NAME``
   (:mod:`realtime.oauth.callback`), which checks the ``state``
   (RFC 6749 §10.12), exchanges the code and fetches the profile through
   the injected :class:`realtime.oauth.providers.outbound.ProviderHttp`.
3. The local user ``NAME:<ProfileIdVariable>`` is looked up; with
   ``auto_create`` a missing one is added to the users file, or on a
   shared store to the store (:func:`realtime.oauth.callback.create_user`,
   :mod:`realtime.oauth.providers.users`).
4. :func:`realtime.oauth.authorize.resume_login` continues: session,
   consent, code, as after a password login.

Every failure shows a page and logs the provider and a reason, never a
code, token, state or secret.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any, Mapping

from realtime.config.users import email
from realtime.config.edit import EditError, UserFile
from realtime.config.login_provider import Provider, ProviderError
from realtime.config.settings import User
from realtime.oauth import pkce
from realtime.oauth.providers.pending import PENDING_TTL, Pending, ProviderLogins, digest

log = logging.getLogger("realtime.oauth.providers")

CALLBACK_PREFIX = "/oauth2/callback/"


def callback_uri(issuer: str, provider: Provider) -> str:
    """SPEC §2: the redirect URI registered at the provider, compared exactly there."""
    return f"{issuer}{CALLBACK_PREFIX}{provider.name}"


# -- start: off to the provider ---------------------------------------------------


async def start_provider_login(logins: ProviderLogins, provider: Provider, *, issuer: str,
                               params: Mapping[str, str], binding: str, client_id: str, address: str,
                               now: float) -> str:
    """POST /oauth2/authorize ``action=provider`` (its CSRF token checked):
    remember the request (in the store: any node may get the callback); the
    provider's authorization URL to send the browser to."""
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48) if provider.pkce else None  # 64 characters (RFC 7636 §4.1: 43-128)
    redirect_uri = callback_uri(issuer, provider)
    await logins.add(state, Pending(
        provider=provider.name, params=dict(params), binding=digest(binding),
        verifier=verifier, redirect_uri=redirect_uri, expires_at=now + PENDING_TTL,
    ), address=address, now=now)
    log.info("provider login started (provider=%s, client_id=%s)", provider.name, client_id)
    return provider.authorization_request(
        redirect_uri=redirect_uri, state=state, challenge=pkce.s256(verifier) if verifier else None
    )


# -- a first login: the new user -------------------------------------------------


def new_user(provider: Provider, sub: str, profile: Mapping[str, Any]) -> User:
    """The user to add on a first login: the provider's ``default_scopes``."""
    address = profile.get("email")
    try:
        address = email(address) if address is not None else None
    except ValueError:
        address = None
    return User(name=sub, scopes=provider.default_scopes, display_name=provider.read_display_name(profile),
                email=address)


def append_user(path: Path, user: User) -> None:
    """Blocking: add ``user`` to the users file with the atomic writer."""
    try:
        users = UserFile(path)
    except EditError as exc:
        raise ProviderError(str(exc)) from None
    for record in users.users:
        name = str(record.get("name", ""))
        if name == user.name:
            return
        if name.casefold() == user.name.casefold():
            raise ProviderError(f"{user.name!r} differs only in case from the existing user {name!r}")
    users.add_user(user.name, list(user.scopes), display_name=user.display_name, email=user.email)
    users.save()
