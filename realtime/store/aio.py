"""The trio facade of the store: every call in the one store thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import trio

from realtime.store.records import CodeRecord, IssuedTokens, OAuth1AccessToken, OAuth1RequestToken, RefreshRecord
from realtime.store.sync import Store

T = TypeVar("T")


class AsyncStore:
    """The store for trio code: every call runs in the one store thread.

    ``CapacityLimiter(1)`` serialises the calls, so one connection is the
    single writer; SQLite's own lock is never contended inside a process.
    """

    def __init__(self, store: Store) -> None:
        self.sync = store
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: str | Path) -> "AsyncStore":
        """Open (creating if needed) the store at ``path`` in a worker thread."""
        return cls(await trio.to_thread.run_sync(Store.open, path))

    @property
    def path(self) -> Path:
        return self.sync.path

    async def close(self) -> None:
        """Close after any call in flight (the limiter orders it last)."""
        await self._run(self.sync.close)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def save_code(self, code_hash: str, **kw: Any) -> None:
        await self._run(lambda: self.sync.save_code(code_hash, **kw))

    async def get_code(self, code_hash: str) -> CodeRecord | None:
        return await self._run(self.sync.get_code, code_hash)

    async def redeem_code(self, code_hash: str, now: float, issued: IssuedTokens) -> bool:
        return await self._run(self.sync.redeem_code, code_hash, now, issued)

    async def revoke_code_grant(self, code_hash: str, now: float) -> list[tuple[str, float]]:
        return await self._run(self.sync.revoke_code_grant, code_hash, now)

    async def record_issue(self, now: float, issued: IssuedTokens) -> str | None:
        return await self._run(self.sync.record_issue, now, issued)

    async def get_refresh(self, refresh_hash: str) -> RefreshRecord | None:
        return await self._run(self.sync.get_refresh, refresh_hash)

    async def rotate_refresh(self, old_hash: str, now: float, issued: IssuedTokens) -> bool:
        return await self._run(self.sync.rotate_refresh, old_hash, now, issued)

    async def revoke_family(self, family_id: str, now: float) -> list[tuple[str, float]]:
        return await self._run(self.sync.revoke_family, family_id, now)

    async def revoke_jtis(self, pairs: Iterable[tuple[str, float]]) -> None:
        await self._run(self.sync.revoke_jtis, list(pairs))

    async def is_revoked(self, jti: str) -> bool:
        return await self._run(self.sync.is_revoked, jti)

    async def revoked_jtis(self, now: float) -> list[tuple[str, float]]:
        return await self._run(self.sync.revoked_jtis, now)

    async def get_consent(self, sub: str, client_id: str) -> frozenset[str] | None:
        return await self._run(self.sync.get_consent, sub, client_id)

    async def save_consent(self, sub: str, client_id: str, scope: Iterable[str], now: float) -> None:
        await self._run(self.sync.save_consent, sub, client_id, frozenset(scope), now)

    async def forget_consent(self, sub: str, client_id: str | None = None) -> None:
        await self._run(self.sync.forget_consent, sub, client_id)

    async def oauth1_use_nonce(self, consumer_key: str, token: str, nonce: str, timestamp: int,
                               expires_at: float) -> bool:
        return await self._run(self.sync.oauth1_use_nonce, consumer_key, token, nonce, timestamp, expires_at)

    async def oauth1_save_request_token(self, token_hash: str, **kw: Any) -> None:
        await self._run(lambda: self.sync.oauth1_save_request_token(token_hash, **kw))

    async def oauth1_get_request_token(self, token_hash: str) -> OAuth1RequestToken | None:
        return await self._run(self.sync.oauth1_get_request_token, token_hash)

    async def oauth1_authorize_request_token(self, token_hash: str, **kw: Any) -> bool:
        return await self._run(lambda: self.sync.oauth1_authorize_request_token(token_hash, **kw))

    async def oauth1_delete_request_token(self, token_hash: str) -> None:
        await self._run(self.sync.oauth1_delete_request_token, token_hash)

    async def oauth1_exchange(self, request_hash: str, now: float, access: OAuth1AccessToken) -> bool:
        return await self._run(self.sync.oauth1_exchange, request_hash, now, access)

    async def oauth1_get_access_token(self, token_hash: str) -> OAuth1AccessToken | None:
        return await self._run(self.sync.oauth1_get_access_token, token_hash)

    async def oauth1_revoke_access_token(self, token_hash: str, now: float) -> bool:
        return await self._run(self.sync.oauth1_revoke_access_token, token_hash, now)

    async def sweep(self, now: float) -> dict[str, int]:
        """The OAuth 2 tables, then the OAuth 1 ones (nonces past their window)."""
        counts = await self._run(self.sync.sweep, now)
        counts.update(await self._run(self.sync.oauth1_sweep, now))
        return counts

    async def counts(self) -> dict[str, int]:
        return await self._run(self.sync.counts)
