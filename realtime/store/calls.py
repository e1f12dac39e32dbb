"""The store's operations as awaitables, without saying how they run.

:class:`StoreCalls` declares every :class:`~realtime.store.store.Store`
operation as an async method in one line (:class:`Awaited`,
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

__all__ = ["Awaited", "StoreCalls"]

P = ParamSpec("P")
R = TypeVar("R")


class Awaited(Generic[P, R]):
    """``Store.method`` as an async method of :class:`StoreCalls`.

    ``get_code = Awaited(Store.get_code)`` makes
    ``await astore.get_code(h)`` run ``astore.sync.get_code(h)`` through
    :meth:`StoreCalls.call`.  The method is looked up by name on the store
    the :class:`StoreCalls` holds, so any store with the same methods (a
    second backend, DESIGN.md §8) is served by the same declarations.
    """

    def __init__(self, method: Callable[Concatenate[Any, P], R]) -> None:
        self.name: str = method.__name__
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self.name:  # ``get_code = Awaited(Store.save_code)``
            raise TypeError(f"{owner.__name__}.{name} would call Store.{self.name}")

    @overload
    def __get__(self, astore: None, owner: type | None = None) -> Awaited[P, R]: ...

    @overload
    def __get__(self, astore: StoreCalls, owner: type | None = None) -> Callable[P, Awaitable[R]]: ...

    def __get__(
        self, astore: StoreCalls | None, owner: type | None = None
    ) -> Awaited[P, R] | Callable[P, Awaitable[R]]:
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

    save_code = Awaited(Store.save_code)
    get_code = Awaited(Store.get_code)
    redeem_code = Awaited(Store.redeem_code)
    revoke_code_grant = Awaited(Store.revoke_code_grant)
    record_issue = Awaited(Store.record_issue)
    get_refresh = Awaited(Store.get_refresh)
    rotate_refresh = Awaited(Store.rotate_refresh)
    revoke_family = Awaited(Store.revoke_family)
    retry_refresh = Awaited(Store.retry_refresh)

    revoke_jtis = Awaited(Store.revoke_jtis)
    is_revoked = Awaited(Store.is_revoked)
    revoked_jtis = Awaited(Store.revoked_jtis)

    add_cutoff = Awaited(Store.add_cutoff)
    live_cutoffs = Awaited(Store.live_cutoffs)

    get_consent = Awaited(Store.get_consent)
    save_consent = Awaited(Store.save_consent)
    forget_consent = Awaited(Store.forget_consent)
    list_consents = Awaited(Store.list_consents)
    withdraw_grant = Awaited(Store.withdraw_grant)
    live_families_of = Awaited(Store.live_families_of)

    save_device_code = Awaited(Store.save_device_code)
    get_device_by_user_code = Awaited(Store.get_device_by_user_code)
    decide_device_code = Awaited(Store.decide_device_code)
    poll_device_code = Awaited(Store.poll_device_code)
    redeem_device_code = Awaited(Store.redeem_device_code)

    save_login_session = Awaited(Store.save_login_session)
    get_login_session = Awaited(Store.get_login_session)
    end_login_session = Awaited(Store.end_login_session)

    add_provider_login = Awaited(Store.add_provider_login)
    take_provider_login = Awaited(Store.take_provider_login)
    add_provider_user = Awaited(Store.add_provider_user)
    provider_user_rows = Awaited(Store.provider_user_rows)
    provider_users_stamp = Awaited(Store.provider_users_stamp)

    oauth1_use_nonce = Awaited(Store.oauth1_use_nonce)
    oauth1_save_request_token = Awaited(Store.oauth1_save_request_token)
    oauth1_get_request_token = Awaited(Store.oauth1_get_request_token)
    oauth1_authorize_request_token = Awaited(Store.oauth1_authorize_request_token)
    oauth1_delete_request_token = Awaited(Store.oauth1_delete_request_token)
    oauth1_exchange = Awaited(Store.oauth1_exchange)
    oauth1_get_access_token = Awaited(Store.oauth1_get_access_token)
    oauth1_revoke_access_token = Awaited(Store.oauth1_revoke_access_token)

    counts = Awaited(Store.counts)

    async def sweep(self, now: float) -> dict[str, int]:
        """The OAuth 2 tables, then the OAuth 1 ones (nonces past their window),
        then the revocation cut-offs."""
        counts = await self.call(self.sync.sweep, now)
        counts.update(await self.call(self.sync.oauth1_sweep, now))
        counts.update(await self.call(self.sync.cutoffs_sweep, now))
        return counts
