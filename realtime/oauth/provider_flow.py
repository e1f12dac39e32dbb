"""Sign in through an external OAuth 2 provider, then continue our own flow.

1. The login page offers "Log in with X" (a form posting ``action=provider``
   with the authorization request and its CSRF token).
   :func:`start_provider_login` remembers the pending request under a fresh
   ``state`` and sends the browser to the provider (RFC 6749 §4.1.1, PKCE
   S256 per RFC 7636 unless the definition says ``"pkce": false``).
2. The provider sends the browser back to ``PUBLIC_URL/oauth2/callback/NAME``
   (:func:`callback_endpoint`).  The ``state`` must be one we issued, to
   this browser, for this provider, within ten minutes, and not used yet:
   RFC 6749 §10.12 "The client MUST implement CSRF protection for its
   redirection URI ... binding the value ... to the user-agent's
   authenticated state".  Ours is bound to the ``rt_csrf`` cookie of the
   browser that started it.
3. The code is exchanged (:mod:`realtime.oauth.provider_client`), the
   profile fetched, and the local user ``NAME:<ProfileIdVariable>`` looked
   up; with ``auto_create`` a missing one is added to the users file.
4. :func:`realtime.oauth.authorize.resume_login` continues: session,
   consent, code, as after a password login.

Pending logins live in this process's memory (single use, ten minutes, at
most :data:`MAX_PENDING`); a restart or a callback reaching another node
asks the user to start again.  Every failure shows a page and logs the
provider and a reason, never a code, token, state or secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlencode

import attrs
import trio

from realtime.http import pages
from realtime.http.request import Request
from realtime.http.responses import Response, redirect
from realtime.oauth import pkce
from realtime.oauth.common import single
from realtime.oauth.errors import InvalidRequestError
from realtime.oauth.provider_client import ProviderTimeout, ProviderUnreachable, exchange_code, fetch_profile
from realtime.oauth.providers import Provider, ProviderError, safe_code
from realtime.oauth.services import CSRF_COOKIE, get_services
from realtime.config.settings import User

if TYPE_CHECKING:
    from realtime.oauth.authorize import _Flow
    from realtime.app import ServerState

log = logging.getLogger("realtime.oauth.providers")

CALLBACK_PREFIX = "/oauth2/callback/"
PENDING_TTL = 600.0
MAX_PENDING = 10_000


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def callback_uri(issuer: str, provider: Provider) -> str:
    """SPEC §2: the redirect URI registered at the provider, compared exactly there."""
    return f"{issuer}{CALLBACK_PREFIX}{provider.name}"


@attrs.frozen
class Pending:
    provider: str
    params: dict[str, str]  # our authorization request, as the login form carried it
    binding: str  # sha256 of the browser's rt_csrf cookie
    verifier: str | None  # PKCE code_verifier (RFC 7636 §4.1)
    redirect_uri: str
    expires_at: float


class ProviderLogins:
    """Pending external logins by the digest of their ``state``; each is taken once."""

    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}
        self.users_lock = trio.Lock()  # one writer of the users file in this process

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, state: str, pending: Pending, now: float) -> None:
        for key in [k for k, p in self._pending.items() if p.expires_at <= now]:
            del self._pending[key]
        while len(self._pending) >= MAX_PENDING:
            del self._pending[next(iter(self._pending))]  # the oldest
        self._pending[_digest(state)] = pending

    def take(self, state: str, now: float) -> Pending | None:
        pending = self._pending.pop(_digest(state), None)
        if pending is None or pending.expires_at <= now:
            return None
        return pending


def get_logins(state: "ServerState") -> ProviderLogins:
    logins = state.extras.get("provider_logins")
    if logins is None:
        logins = state.extras["provider_logins"] = ProviderLogins()
    return logins


# -- 1. start -------------------------------------------------------------------


async def start_provider_login(flow: "_Flow", form: Mapping[str, str]) -> Response:
    """POST /oauth2/authorize ``action=provider``: off to the provider."""
    if not flow.csrf_ok(form.get("csrf_token"), "login"):
        return flow.login(403, "The form has expired. Please sign in again.")
    provider = flow.settings.providers.get(form.get("provider", ""))
    if provider is None:
        return flow.login(400, "That sign-in option is not available.")
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48) if provider.pkce else None  # 64 characters (RFC 7636 §4.1: 43-128)
    redirect_uri = callback_uri(flow.settings.issuer, provider)
    get_logins(flow.state).add(state, Pending(
        provider=provider.name, params=dict(flow.authz.params), binding=_digest(flow.binding),
        verifier=verifier, redirect_uri=redirect_uri, expires_at=flow.now + PENDING_TTL,
    ), flow.now)
    log.info("provider login started (provider=%s, client_id=%s)", provider.name, flow.authz.app.client_id)
    url = provider.authorization_request(
        redirect_uri=redirect_uri, state=state, challenge=pkce.s256(verifier) if verifier else None
    )
    await trio.lowlevel.checkpoint()
    return redirect(url).with_headers(*flow.set_cookies)


# -- 2. callback ----------------------------------------------------------------


def _page(status: int, title: str, message: str, retry: str | None = None) -> Response:
    link = (retry, "Back to sign in") if retry else None
    return pages.page_response(status, pages.error_page(title, message, link))


async def callback_endpoint(request: Request, state: "ServerState") -> Response:
    """GET /oauth2/callback/NAME: the provider's answer (RFC 6749 §4.1.2)."""
    name = request.path[len(CALLBACK_PREFIX):]
    provider = state.settings.providers.get(name)
    if provider is None:
        return _page(404, "Unknown sign-in provider", "This sign-in provider is not configured here.")
    if request.method != "GET":  # HEAD (a link checker, a prefetch) must not use up the state
        return _page(200, "Sign-in", "Open this address with GET to finish signing in.")
    try:
        params = single(request.query)
    except InvalidRequestError:
        return _page(400, "Sign-in failed", "The answer from the sign-in provider could not be read.")
    services = get_services(state)
    now = services.clock()
    given = params.get("state", "")
    pending = get_logins(state).take(given, now) if 0 < len(given) <= 200 else None
    binding = request.cookies().get(CSRF_COOKIE, "")
    if (pending is None or pending.provider != name or not binding
            or not hmac.compare_digest(_digest(binding), pending.binding)):
        log.warning("provider callback refused: unknown, expired, used or foreign state (provider=%s)", name)
        return _page(400, "Sign-in expired",
                     "This sign-in was not started in this browser, has expired or was already used. "
                     "Please go back to the application and start again.")
    retry = "/oauth2/authorize?" + urlencode(pending.params)
    label = provider.display_name
    if "error" in params:
        error = safe_code(params["error"])
        log.info("provider login: %s answered error=%s", name, error)
        if error == "access_denied":
            return _page(403, "Sign-in cancelled", f"{label} did not let you sign in (access was denied).", retry)
        return _page(502, "Sign-in failed", f"{label} reported an error ({error}).", retry)
    code = params.get("code")
    if not code:
        log.warning("provider login: %s sent no code", name)
        return _page(502, "Sign-in failed", f"{label} sent no authorization code.", retry)
    try:
        token = await exchange_code(provider, code=code, redirect_uri=pending.redirect_uri,
                                    verifier=pending.verifier)
        profile = await fetch_profile(provider, token)
        sub = provider.sub_for(provider.read_profile_id(profile))
    except ProviderTimeout as exc:
        log.warning("provider login: %s timed out: %s", name, exc)
        return _page(504, "Sign-in failed", f"{label} did not answer in time. Please try again later.", retry)
    except ProviderUnreachable as exc:
        log.warning("provider login: %s unreachable: %s", name, exc)
        return _page(502, "Sign-in failed", f"{label} could not be reached. Please try again later.", retry)
    except ProviderError as exc:
        log.warning("provider login: %s failed: %s", name, exc)
        return _page(502, "Sign-in failed", f"{label} did not complete the sign-in.", retry)
    user = state.settings.users.get(sub)
    if user is None:
        if not provider.auto_create:
            log.info("provider login refused: %s is not a user here (auto_create is off)", sub)
            return _page(403, "No account here",
                         f"Your {label} account is not linked to an account here. "
                         f"Ask the operator to add the user {sub}.", retry)
        try:
            user = await create_user(state, provider, sub, profile)
        except (OSError, ProviderError) as exc:
            log.error("provider login: could not add user %s: %s", sub, exc)
            return _page(500, "Sign-in failed", "Your account could not be created. Please try again later.")
    if user.disabled:
        log.info("provider login refused: %s is disabled", sub)
        return _page(403, "Account disabled", "This account is disabled.")
    log.info("provider login: %s signed in through %s", sub, name)
    from realtime.oauth.authorize import resume_login

    return await resume_login(request, state, pending.params, user)


# -- 3. users ---------------------------------------------------------------------


def new_user(provider: Provider, sub: str, profile: Mapping[str, Any]) -> User:
    """The user to add on a first login: the provider's ``default_scopes``."""
    from realtime.config.apps import email

    address = profile.get("email")
    try:
        address = email(address) if address is not None else None
    except ValueError:
        address = None
    return User(name=sub, scopes=provider.default_scopes, display_name=provider.read_display_name(profile),
                email=address)


async def create_user(state: "ServerState", provider: Provider, sub: str, profile: Mapping[str, Any]) -> User:
    """Add ``sub`` to the users file (the operator sees, disables or removes
    it there like any user), then to the running snapshot.

    One writer per process; a user already in the file (a reload has not
    caught up yet) is not written twice.
    """
    path = state.settings.oauth.users
    if path is None:
        raise ProviderError("no [oauth] users file to add users to")
    user = new_user(provider, sub, profile)
    async with get_logins(state).users_lock:
        current = state.settings.users.get(sub)
        if current is not None:
            return current
        await trio.to_thread.run_sync(append_user, path, user)
        settings = state.settings
        state.settings = attrs.evolve(settings, users={**settings.users, sub: user})
    log.info("provider login: added user %s (scopes %s) to %s", sub, " ".join(user.scopes) or "-", path)
    return user


def append_user(path: Any, user: User) -> None:
    """Blocking: add ``user`` to the users file with the admin module's atomic writer."""
    from realtime.cli.admin.files import AdminError
    from realtime.cli.admin.users import UserFile

    try:
        users = UserFile(path)
    except AdminError as exc:
        raise ProviderError(str(exc)) from None
    for record in users.users:
        name = str(record.get("name", ""))
        if name == user.name:
            return
        if name.casefold() == user.name.casefold():
            raise ProviderError(f"{user.name!r} differs only in case from the existing user {name!r}")
    users.add_user(user.name, list(user.scopes), display_name=user.display_name, email=user.email)
    users.save()
