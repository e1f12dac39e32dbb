"""What session tests share: the app's services without a server, a peer
without a socket, tokens, and a reader for the frames the server prepares."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import attrs

from realtime.api.metrics import Counters
from realtime.config.settings import Settings
from realtime.hub import Hub
from realtime.session.ratelimit import RateLimiter
from realtime.tokens.keyring import (
    AccessClaims,
    KeyRing,
    RevokedSet,
    issue_access_token,
)

_ids = itertools.count(1_000_000)


@attrs.define(eq=False)
class FakeApp:
    """The services a session reads (the dispatcher's ``App``)."""

    settings: Settings
    keyring: KeyRing
    revoked: RevokedSet
    hub: Hub
    metrics: Counters = attrs.Factory(Counters)

    def emit(self, type_: str, data: dict) -> None:
        """Webhook events (realtime.api.app.App.emit): none here."""


def make_app(settings: Settings, keys_dir: Path) -> FakeApp:
    keyring = KeyRing.load_or_create(keys_dir, settings.oauth.signing_alg)
    return FakeApp(settings, keyring, RevokedSet(), Hub(settings.channels, settings.websocket))


def mint(app: FakeApp, sub: str = "alice", scope: str = "chat:read chat:write", ttl: float = 60.0,
         client_id: str = "chat-app", now: float | None = None) -> tuple[str, AccessClaims]:
    return issue_access_token(
        app.keyring, issuer=app.settings.issuer, audience=app.settings.audience,
        sub=sub, client_id=client_id, scope=scope.split(), ttl=ttl, now=now,
    )


class FakePeer:
    """The dispatcher's ``Peer``: what the hub offers it and how it was
    withdrawn are kept for the test to read."""

    def __init__(self, claims: AccessClaims, publish_rate: str = "50/s", echo: bool = False,
                 message_rate: str = "100000/s") -> None:
        self.conn_id = next(_ids)
        self.echo = echo
        self.publish_limit = RateLimiter.from_spec(publish_rate)
        self.message_limit = RateLimiter.from_spec(message_rate)
        self.offered: list[bytes] = []
        self.withdrawn: tuple[int, str] | None = None
        self.adopt(claims)

    def adopt(self, claims: AccessClaims) -> None:
        self.claims = claims
        self.sub, self.client_id, self.kid, self.jti = claims.sub, claims.client_id, claims.kid, claims.jti
        self.scopes = claims.scope
        self.exp = claims.exp

    def offer(self, frame: bytes) -> None:
        self.offered.append(frame)

    def withdraw(self, code: int, reason: str) -> None:
        self.withdrawn = (code, reason)


def payload(frame: bytes) -> bytes:
    """The payload of one unmasked server frame (realtime.protocol.frames)."""
    n = frame[1] & 0x7F
    start = 2 if n < 126 else 4 if n == 126 else 10
    return frame[start:]


def decoded(frames: list[bytes]) -> list[Any]:
    """The JSON messages in ``frames``, in order."""
    return [json.loads(payload(f)) for f in frames]
