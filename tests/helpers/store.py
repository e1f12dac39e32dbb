"""Store test values: a fixed clock and what a grant answered."""

from __future__ import annotations

from typing import Callable

from realtime.store import IssuedTokens, Store, token_hash

NOW = 1_800_000_000.0

OpenStore = Callable[[], Store]


def issued(jti: str, refresh: str | None = None, family: str | None = None, exp: float = NOW + 900,
           scope: frozenset[str] = frozenset({"chat:read"})) -> IssuedTokens:
    """What a grant for alice at ``app`` answered: an access token and maybe a refresh token."""
    return IssuedTokens(
        access_jti=jti, access_exp=exp,
        refresh_hash=token_hash(refresh) if refresh else None,
        refresh_expires_at=NOW + 86400 if refresh else None,
        family_id=family, client_id="app", sub="alice", scope=scope,
    )
