"""The store's operations as awaitables, without saying how they run.

:class:`StoreCalls` declares every :class:`~realtime.store.store.Store`
operation as an async method in one line (:class:`InStoreThread`,
keeping its parameters and return type) over one abstract
:meth:`StoreCalls.call`.  The cores (OAuth, OAuth 1.0a) are typed against
this class; the trio edge, :class:`realtime.store.aio.AsyncStore`, says
how a call runs (in the one store thread), so this module imports no
trio and a core that names the store's type loads none.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Awaitable, Callable, Concatenate, Generic, ParamSpec, TypeVar, overload

from realtime.store.store import Store

__all__ = ["InStoreThread", "StoreCalls"]

P = ParamSpec("P")
R = TypeVar("R")


class InStoreThread(Generic[P, R]):
    """``Store.method`` as an async method of :class:`StoreCalls`.

    ``get_code = InStoreThread(Store.get_code)`` makes
    ``await astore.get_code(h)`` run ``astore.sync.get_code(h)`` through
    :meth:`StoreCalls.call`.  The method is looked up by name on the store
    the :class:`StoreCalls` holds, so any store with the same methods (a
    second backend, DESIGN.md §8) is served by the same declarations.
    """

    def __init__(self, method: Callable[Concatenate[Any, P], R]) -> None:
        self.name: str = method.__name__
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self.name:  # ``get_code = InStoreThread(Store.save_code)``
            raise TypeError(f"{owner.__name__}.{name} would call Store.{self.name}")

    @overload
    def __get__(self, astore: None, owner: type | None = None) -> InStoreThread[P, R]: ...

    @overload
    def __get__(self, astore: StoreCalls, owner: type | None = None) -> Callable[P, Awaitable[R]]: ...

    def __get__(
        self, astore: StoreCalls | None, owner: type | None = None
    ) -> InStoreThread[P, R] | Callable[P, Awaitable[R]]:
        if astore is None:
            return self
        method: Callable[P, R] = getattr(astore.sync, self.name)

        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return await astore.call(method, *args, **kwargs)

        return functools.update_wrapper(call, method)


class StoreCalls:
    """Every store operation, awaited; :meth:`call` decides where it runs."""

    sync: Store

    @property
    def path(self) -> Path:
        return self.sync.path

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` against the store; the edge implements it."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close after any call in flight."""
        await self.call(self.sync.close)

    save_code = InStoreThread(Store.save_code)
    get_code = InStoreThread(Store.get_code)
    redeem_code = InStoreThread(Store.redeem_code)
    revoke_code_grant = InStoreThread(Store.revoke_code_grant)
    record_issue = InStoreThread(Store.record_issue)
    get_refresh = InStoreThread(Store.get_refresh)
    rotate_refresh = InStoreThread(Store.rotate_refresh)
    revoke_family = InStoreThread(Store.revoke_family)

    revoke_jtis = InStoreThread(Store.revoke_jtis)
    is_revoked = InStoreThread(Store.is_revoked)
    revoked_jtis = InStoreThread(Store.revoked_jtis)

    get_consent = InStoreThread(Store.get_consent)
    save_consent = InStoreThread(Store.save_consent)
    forget_consent = InStoreThread(Store.forget_consent)

    oauth1_use_nonce = InStoreThread(Store.oauth1_use_nonce)
    oauth1_save_request_token = InStoreThread(Store.oauth1_save_request_token)
    oauth1_get_request_token = InStoreThread(Store.oauth1_get_request_token)
    oauth1_authorize_request_token = InStoreThread(Store.oauth1_authorize_request_token)
    oauth1_delete_request_token = InStoreThread(Store.oauth1_delete_request_token)
    oauth1_exchange = InStoreThread(Store.oauth1_exchange)
    oauth1_get_access_token = InStoreThread(Store.oauth1_get_access_token)
    oauth1_revoke_access_token = InStoreThread(Store.oauth1_revoke_access_token)

    counts = InStoreThread(Store.counts)

    async def sweep(self, now: float) -> dict[str, int]:
        """The OAuth 2 tables, then the OAuth 1 ones (nonces past their window)."""
        counts = await self.call(self.sync.sweep, now)
        counts.update(await self.call(self.sync.oauth1_sweep, now))
        return counts
