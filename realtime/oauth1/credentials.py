"""Who signed this request: consumer, token, signature, nonce (RFC 5849 §3.2).

RFC 5849 §3.2: "Servers receiving an authenticated request MUST validate
it by: Recalculating the request signature independently ... Ensuring
that the combination of nonce/timestamp/token (if present) received
from the client has not been used before ... If a token is present,
verifying the scope and status of the client authorization as
represented by the token."

Everything that needs the store is fetched first (the store's thread),
then :mod:`realtime.oauth1.signing` checks the signature without
I/O, then the nonce is recorded: only a correctly signed request can
spend a nonce, so junk cannot fill the table or burn a client's nonces.
"""

from __future__ import annotations

import enum
import logging
import time
from typing import Any, Callable, Protocol

import attrs

from realtime.http.request import Request
from realtime.oauth1 import crypto, signing
from realtime.oauth1.errors import OAuth1Error
from realtime.config.settings import App, Settings
from realtime.oauth.services import OAuthApp
from realtime.store import OAuth1AccessToken, OAuth1RequestToken, token_hash
from realtime.store.calls import StoreCalls


log = logging.getLogger("realtime.oauth1")


class Kind(enum.Enum):
    """Which credentials a request must be signed with."""

    TEMPORARY = "request_token"  # §2.1: client credentials only
    EXCHANGE = "access_token"  # §2.3: client + temporary credentials + verifier
    RESOURCE = "resource"  # §3: client + token credentials


@attrs.define
class OAuth1Services:
    """What the OAuth 1.0a endpoints share; built once at start by the net
    layer (``build_state``) with :func:`build_services`."""

    store: StoreCalls
    key: bytes
    clock: Callable[[], float] = time.time
    _index: tuple[Any, dict[str, App]] | None = None
    _secrets: dict[tuple[str, str], str] = attrs.field(factory=dict)

    def consumer(self, settings: Settings, consumer_key: str) -> App | None:
        """The app with ``oauth1 = true`` and this consumer key, in the
        current snapshot (the index is rebuilt when the snapshot changes)."""
        if self._index is None or self._index[0] is not settings.apps:
            index = {app.consumer_key: app for app in settings.apps.values()
                     if app.oauth1 and app.consumer_key}
            self._index = (settings.apps, index)
        return self._index[1].get(consumer_key)

    def consumer_secret(self, app: App) -> str | None:
        if not app.consumer_secret_enc or not app.consumer_key:
            return None
        cache_key = (app.consumer_key, app.consumer_secret_enc)
        secret = self._secrets.get(cache_key)
        if secret is None:
            try:
                secret = crypto.decrypt(self.key, app.consumer_secret_enc, crypto.consumer_context(app.consumer_key))
            except crypto.SecretError:
                log.error("app %s: consumer_secret_enc does not decrypt with this state dir's %s",
                          app.client_id, crypto.KEY_FILE)
                return None
            if len(self._secrets) > 10_000:
                self._secrets.clear()
            self._secrets[cache_key] = secret
        return secret

    def seal(self, secret: str, hashed: str) -> str:
        return crypto.encrypt(self.key, secret, crypto.token_context(hashed))

    def unseal(self, value: str, hashed: str) -> str | None:
        try:
            return crypto.decrypt(self.key, value, crypto.token_context(hashed))
        except crypto.SecretError:
            return None


class OAuth1App(OAuthApp, Protocol):
    """What the OAuth 1.0a endpoints read from the application object: the
    OAuth 2 part (login sessions, CSRF, argon2, sweeping) and their own."""

    oauth1: OAuth1Services


def build_services(store: StoreCalls, key: bytes, **overrides: Any) -> OAuth1Services:
    """``key``: :func:`realtime.oauth1.crypto.load_or_create_key` (blocking:
    the caller reads it in a thread).  Keyword overrides (``clock``) are for tests."""
    return OAuth1Services(store=store, key=key, **overrides)


@attrs.frozen
class Verified:
    app: App
    signed: signing.SignedRequest
    request_token: OAuth1RequestToken | None = None
    access_token: OAuth1AccessToken | None = None


async def authenticate(request: Request, state: OAuth1App, kind: Kind) -> Verified:
    """Verify a signed request for ``kind``.

    Raises:
        OAuth1Error: the problem, in the order a client can fix them:
            malformed (400), timestamp, consumer, token, signature, nonce,
            then the token's status.
    """
    services = state.oauth1
    settings = state.settings
    now = services.clock()
    signed = signing.parse(request)
    signing.check_timestamp(signed, now)
    app = services.consumer(settings, signed.consumer_key)
    if app is None:
        raise OAuth1Error("consumer_key_unknown", "the consumer key is not registered")
    secret = services.consumer_secret(app)
    signing.check_method(signed, request.scheme, has_secret=secret is not None,
                         has_rsa_key=app.rsa_public_key is not None)

    request_token = access_token = None
    token_secret: str | None = None
    if kind is Kind.TEMPORARY:
        if signed.token is not None:
            raise OAuth1Error("parameter_rejected", "a request token request carries no oauth_token",
                              oauth_parameters_rejected="oauth_token")
    else:
        if signed.token is None:
            raise OAuth1Error("parameter_absent", "oauth_token is missing", oauth_parameters_absent="oauth_token")
        hashed = token_hash(signed.token)
        if kind is Kind.EXCHANGE:
            request_token = await services.store.oauth1_get_request_token(hashed)
            record: Any = request_token
        else:
            access_token = await services.store.oauth1_get_access_token(hashed)
            record = access_token
        if record is None or record.client_id != app.client_id:
            raise OAuth1Error("token_rejected", "the token is unknown or belongs to another consumer")
        token_secret = services.unseal(record.secret_enc, hashed)
        if token_secret is None:
            log.error("an OAuth 1 token secret does not decrypt with this state dir's %s", crypto.KEY_FILE)
            raise OAuth1Error("token_rejected", "the token cannot be used")

    uris = signing.signed_uris(request, settings.server.public_url)
    if not signing.verify(signed, uris, consumer_secret=secret, token_secret=token_secret,
                          rsa_public_key=app.rsa_public_key):
        raise OAuth1Error("signature_invalid", "the signature does not match the request")

    if signed.nonce is not None and signed.timestamp is not None:
        fresh = await services.store.oauth1_use_nonce(
            signed.consumer_key, signed.token or "", signed.nonce, signed.timestamp,
            float(signed.timestamp + signing.TIMESTAMP_WINDOW + 1),
        )
        if not fresh:
            raise OAuth1Error("nonce_used", "this nonce was already used with this timestamp")
        await state.oauth.maybe_sweep(now)  # the store's periodic sweep also forgets old nonces

    if request_token is not None:
        if request_token.used_at is not None:
            raise OAuth1Error("token_used", "the request token was already exchanged")
        if request_token.expires_at <= now:
            raise OAuth1Error("token_expired", "the request token has expired")
    if access_token is not None:
        if access_token.revoked_at is not None:
            raise OAuth1Error("token_revoked", "the access token was revoked")
        if access_token.expires_at is not None and access_token.expires_at <= now:
            raise OAuth1Error("token_expired", "the access token has expired")
    return Verified(app=app, signed=signed, request_token=request_token, access_token=access_token)
