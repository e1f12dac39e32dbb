"""What the OAuth routes share: :class:`OAuthServices`, built once at
start by the net layer (``realtime.net.startup.build_state``) from plain
values and the injected seams (an :class:`~realtime.oauth.offload.Offload`
for argon2 and one for the users file, the provider HTTP client), and
:class:`OAuthApp`, the part of the application object the OAuth
endpoints read.  ``OAuthApp`` is a Protocol so that oauth names what it
needs without importing the concrete application type
(:class:`realtime.api.app.App`) from the layer above.

Also the browser side: the login session (a row in the store behind a
cookie holding a random id) and the CSRF tokens of the forms, HMAC-SHA256
under a server key kept in ``state_dir/oauth.key`` (mode 0600) so they
survive a restart.  Nothing here holds a password or a client secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import attrs

from realtime.config.settings import Settings, User
from realtime.config.units import parse_rate
from realtime.http.counters import Counters
from realtime.http.request import Request
from realtime.oauth.offload import Offload
from realtime.oauth.passwords import Hasher, SecretCache, credential_hmac
from realtime.oauth.providers.pending import ProviderLogins
from realtime.oauth.providers.users import ProviderUsers
from realtime.oauth.providers.outbound import ProviderHttp
from realtime.oauth.throttle import ClientAuthThrottle, KeyedBuckets, LoginThrottle
from realtime.tokens.keyring import KeyRing, RevokedSet
from realtime.store import LoginSession, token_hash
from realtime.store.calls import StoreCalls


SESSION_COOKIE = "rt_session"
CSRF_COOKIE = "rt_csrf"
SESSION_TTL = 12 * 3600.0  # the default of [oauth] session_ttl
CSRF_TTL = 3600.0
KEY_FILE = "oauth.key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def credential_mark(key: bytes, user: User) -> str:
    """What a login session carries of its user's credential under ``key``
    (:meth:`OAuthServices.credential_mark`)."""
    return _b64(credential_hmac(key, "credential", user.name, user.password_hash or ""))[:22]


def load_or_create_key(state_dir: Path) -> bytes:
    """The server's HMAC key for sessions and CSRF tokens (32 random bytes)."""
    path = state_dir / KEY_FILE
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data[:32]
    except OSError:
        pass
    key = secrets.token_bytes(32)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable state dir: sessions last as long as the process
    return key



#: RFC 6265bis §4.1.3.2: a ``__Host-`` cookie must be ``Secure``, have
#: ``Path=/`` and no ``Domain``, so neither a sibling subdomain nor the
#: plain-HTTP listener nor an on-path attacker can set or overwrite it
#: (cookie tossing).  Used on HTTPS; plain HTTP keeps the bare
#: names (browsers refuse ``__Host-`` without ``Secure``), and the HTTPS
#: side never reads a bare name.
HOST_PREFIX = "__Host-"


def cookie_name(base: str, request: Request) -> str:
    """The name of the login-flow cookie ``base`` for this request."""
    return HOST_PREFIX + base if request.effective_scheme == "https" else base


def read_cookie(request: Request, base: str) -> str | None:
    return request.cookies().get(cookie_name(base, request))


def set_cookie(name: str, value: str, request: Request, max_age: int, path: str = "/oauth2") -> tuple[str, str]:
    """A ``Set-Cookie`` for the login flows: HttpOnly, SameSite=Lax; over
    HTTPS (the listener's, or a trusted proxy's) ``__Host-`` prefixed, ``Secure`` and ``Path=/`` (``path`` then
    does not apply)."""
    if request.effective_scheme == "https":
        return ("set-cookie", f"{HOST_PREFIX}{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; "
                              "SameSite=Lax")
    return ("set-cookie", f"{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax")


@attrs.frozen
class Session:
    """A live login session as the pages see it (the store's
    :class:`~realtime.store.LoginSession`, by cookie)."""

    sub: str
    iat: float  # when the user signed in
    exp: float
    sid: str  # public id: the id_token's ``sid``, recorded with codes and families
    cred: str = ""  # credential_mark() of the user when the session began

    @property
    def auth_time(self) -> float:
        return self.iat


#: Longest cookie value read (ours are 43 characters); longer is ignored unhashed.
MAX_SESSION_COOKIE = 100


@attrs.define
class OAuthServices:
    store: StoreCalls
    key: bytes
    hasher: Hasher  # user passwords
    provider_http: ProviderHttp  # outbound HTTP of provider logins
    users_offload: Offload  # one writer of the users file (a provider's first login)
    # Pending provider logins, in the store (a callback may reach another node).
    logins: ProviderLogins = attrs.field(
        default=attrs.Factory(lambda self: ProviderLogins(self.store, self.key), takes_self=True))
    # Users a provider's first login created in a shared store, merged into settings.users.
    provider_users: ProviderUsers = attrs.field(factory=ProviderUsers)
    secret_cache: SecretCache = attrs.field(factory=SecretCache)
    throttle: LoginThrottle = attrs.field(factory=lambda: LoginThrottle(10 / 60, 10, 30 / 60, 30))
    # Client secrets get their own argon2 limiter and queue;
    # None: share ``hasher`` (tests that build services by hand).
    client_hasher: Hasher | None = None
    client_throttle: ClientAuthThrottle = attrs.field(factory=lambda: ClientAuthThrottle(20 / 60, 20))
    clock: Callable[[], float] = time.time
    last_sweep: float = 0.0
    sweep_every: float = 600.0
    # Wrong user codes per address at /device (RFC 8628 §5.1; [oauth] user_code_rate).
    user_code_throttle: KeyedBuckets = attrs.field(factory=lambda: KeyedBuckets(10 / 60, 10))
    # New device codes per address (each is a stored row): 60 a minute, bursts of 30.
    device_request_throttle: KeyedBuckets = attrs.field(factory=lambda: KeyedBuckets(1.0, 30))
    # Provider logins started per address (each is a stored pending row): 20 a minute, bursts of 10.
    provider_start_throttle: KeyedBuckets = attrs.field(factory=lambda: KeyedBuckets(20 / 60, 10))

    @property
    def secret_hasher(self) -> Hasher:
        """The hasher for client secrets."""
        return self.client_hasher or self.hasher

    # -- sessions -----------------------------------------------------------
    # A login session lives in the store (so it survives a restart and is
    # shared by nodes on a shared store); the cookie holds a random id whose
    # SHA-256 is the row's key.  A sign-in always draws a new id (no session
    # fixation); a password change, a disabled or removed user ends it.

    def _mac(self, *parts: str) -> str:
        msg = "\x1f".join(parts).encode("utf-8", "surrogatepass")
        return _b64(hmac.new(self.key, msg, hashlib.sha256).digest())

    def credential_mark(self, user: User) -> str:
        """An HMAC of the user's current password hash: it changes with the
        password and reveals nothing about it (the hash itself never goes
        into a cookie or the store)."""
        return credential_mark(self.key, user)

    async def make_session(self, user: User, now: float, ttl: float = SESSION_TTL, *,
                           replacing: str | None = None) -> str:
        """Start a session for ``user`` signed in at ``now``; returns the new
        cookie value.  ``replacing``: the browser's current cookie, whose
        session ends in the same transaction; if it was ``user``'s, its
        ``sid`` carries over (one logout still finds every token of it)."""
        old = await self.read_session(replacing, now) if replacing else None
        sid = old.sid if old is not None and old.sub == user.name else secrets.token_urlsafe(16)
        cookie = secrets.token_urlsafe(32)
        record = LoginSession(id_hash=token_hash(cookie), sid=sid, sub=user.name,
                              credential=self.credential_mark(user), auth_time=now, expires_at=now + ttl)
        replaced = token_hash(replacing) if replacing and len(replacing) <= MAX_SESSION_COOKIE else None
        await self.store.save_login_session(record, replaced)
        return cookie

    def session_user(self, session: Session, settings: Settings) -> User | None:
        """The session's user if it may still act: present, enabled, and
        with the password the session was started with (a
        password change, a disabled or removed user ends every session)."""
        user = settings.users.get(session.sub)
        if user is None or user.disabled:
            return None
        if not hmac.compare_digest(session.cred.encode(), self.credential_mark(user).encode()):
            return None
        return user

    async def read_session(self, cookie: str | None, now: float) -> Session | None:
        """The live session of a cookie value, or None."""
        if not cookie or len(cookie) > MAX_SESSION_COOKIE:
            return None
        found = await self.store.get_login_session(token_hash(cookie), now)
        if found is None:
            return None
        return Session(found.sub, found.auth_time, found.expires_at, found.sid, found.credential)

    async def signed_in(self, request: Request, settings: Settings, now: float) -> tuple[User, Session] | None:
        """The signed-in user of ``request`` and their session, or None."""
        session = await self.read_session(read_cookie(request, SESSION_COOKIE), now)
        if session is None:
            return None
        user = self.session_user(session, settings)
        return (user, session) if user is not None else None

    @staticmethod
    def session_cookie(value: str, request: Request, max_age: int) -> tuple[str, str]:
        """The session's ``Set-Cookie``: ``Path=/`` on both schemes, so every
        page of the server (``/oauth2``, ``/oauth1``, ``/device``, ``/account``)
        sees the one session.  ``max_age=0`` deletes it."""
        return set_cookie(SESSION_COOKIE, value, request, max_age, path="/")

    @staticmethod
    def legacy_session_cookie_removals(request: Request) -> tuple[tuple[str, str], ...]:
        """Plain HTTP only: delete the session cookies older servers set on
        ``Path=/oauth2`` and ``/oauth1``.  A browser sends the more specific
        path first and the first value wins, so a stale one would hide the
        new ``Path=/`` session until it expired."""
        if request.scheme == "https":
            return ()
        return tuple(set_cookie(SESSION_COOKIE, "", request, 0, path=p) for p in ("/oauth2", "/oauth1"))

    # -- CSRF ---------------------------------------------------------------

    def new_binding(self) -> str:
        """A fresh CSRF binding cookie value: ``random.HMAC(key, random)``.

        Only values the server issued verify (:meth:`read_binding`), so a
        cookie of an attacker's choosing is ignored and replaced.
        """
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._mac('binding', nonce)[:22]}"

    def read_binding(self, request: Request) -> str:
        """The browser's binding cookie if the server issued it, else ``""``."""
        value = read_cookie(request, CSRF_COOKIE) or ""
        if len(value) > 100 or value.count(".") != 1:
            return ""
        nonce, mac = value.split(".")
        if not nonce or not hmac.compare_digest(mac.encode(), self._mac("binding", nonce)[:22].encode()):
            return ""
        return value

    def csrf_token(self, purpose: str, binding: str, flow: str, now: float) -> str:
        """A token for one form: bound to the browser (``rt_csrf`` cookie and
        the session id), to the authorization request, and to the time."""
        ts = str(int(now))
        return f"{ts}.{self._mac('csrf', purpose, binding, flow, ts)}"

    def check_csrf(self, token: str | None, purpose: str, binding: str, flow: str, now: float) -> bool:
        if not token or not binding or token.count(".") != 1 or len(token) > 200:
            return False
        ts, mac = token.split(".")
        if not ts.isdigit() or not now - CSRF_TTL <= int(ts) <= now + 60:
            return False
        return hmac.compare_digest(mac, self._mac("csrf", purpose, binding, flow, ts))

    # -- housekeeping -------------------------------------------------------

    async def sweep(self, now: float) -> None:
        """Delete the store's rows that can no longer matter."""
        self.last_sweep = now
        await self.store.sweep(now)

    async def maybe_sweep(self, now: float) -> None:
        if now - self.last_sweep >= self.sweep_every:
            await self.sweep(now)

    async def start(self) -> None:
        """Sweep the store once at start (then every ``sweep_every`` seconds)."""
        await self.sweep(self.clock())


class OAuthApp(Protocol):
    """What the OAuth endpoints read from the application object.

    ``settings`` is replaced whole on reload (and, for a provider's first
    login, by the flow itself); ``revoke_access`` marks an access token
    revoked and closes its live connections.
    """

    settings: Settings
    keyring: KeyRing
    revoked: RevokedSet
    metrics: Counters
    oauth: OAuthServices

    def revoke_access(self, jti: str, exp: float, *, share: bool = True) -> int: ...


def _rate(text: str, fallback: tuple[float, int]) -> tuple[float, int]:
    try:
        return parse_rate(text)
    except ValueError:
        return fallback


def build_services(settings: Settings, store: StoreCalls, key: bytes, *, hasher: Hasher,
                   provider_http: ProviderHttp, users_offload: Offload,
                   client_hasher: Hasher | None = None, **overrides: Any) -> OAuthServices:
    """The services for ``settings`` (``key``: :func:`load_or_create_key`).

    Keyword overrides (``clock``, ``secret_cache``, ...) are for tests.
    """
    rate, burst = _rate(settings.oauth.login_rate, (10 / 60, 10))
    user_rate, user_burst = _rate(settings.oauth.login_user_rate, (30 / 60, 30))
    client_rate, client_burst = _rate(settings.oauth.client_auth_rate, (20 / 60, 20))
    overrides.setdefault("throttle", LoginThrottle(rate, burst, user_rate, user_burst))
    overrides.setdefault("client_throttle", ClientAuthThrottle(client_rate, client_burst))
    code_rate, code_burst = _rate(settings.oauth.user_code_rate, (10 / 60, 10))
    overrides.setdefault("user_code_throttle", KeyedBuckets(code_rate, code_burst))
    return OAuthServices(store=store, key=key, hasher=hasher, provider_http=provider_http,
                         users_offload=users_offload, client_hasher=client_hasher, **overrides)
