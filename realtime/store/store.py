"""The synchronous store: one :class:`Database` and the table functions over it.

The tables are modules of functions whose first argument is the database
(:mod:`~realtime.store.grants`, :mod:`~realtime.store.consents`,
:mod:`~realtime.store.revoked`, :mod:`~realtime.store.oauth1`).
:class:`Store` holds the database and lists those functions as its
methods, one line each through :class:`TableCall`, so callers keep one
flat name per operation (``store.redeem_code(...)``) and there is no
forwarding code to keep in step with the tables.

This is the seam for a second backend (DESIGN.md §8).  The PostgreSQL
store (:mod:`realtime.store.postgres`) brings its own database object,
with the same ``write``/``claim``/``read``/``read_one`` and a ``c`` whose
``execute`` takes the same SQL, and reuses these table functions: their
SQL is written to read the same on SQLite and PostgreSQL (``?``
placeholders, ``ON CONFLICT``, no ``INSERT OR IGNORE`` and no
two-argument ``max``), so each guarantee has one implementation.
:class:`~realtime.store.aio.AsyncStore` calls whatever store it holds by
name, and the tests in ``tests/store`` take the store from a fixture
parametrised over both backends.
"""

from __future__ import annotations

import functools
import types
from pathlib import Path
from typing import Callable, Concatenate, Generic, ParamSpec, TypeVar, overload

from realtime.store import (
    consents, cutoffs, devices, grants, oauth1, provider_logins, provider_users, revoked, sessions, signing_keys,
)
from realtime.store.database import Database

__all__ = ["Store", "TableCall"]

P = ParamSpec("P")
R = TypeVar("R")


class TableCall(Generic[P, R]):
    """A table function ``fn(db, *args)`` as the :class:`Store` method ``store.fn(*args)``.

    The method's signature, return type and docstring are the function's,
    so the store stays typed without restating any of them.
    """

    def __init__(self, fn: Callable[Concatenate[Database, P], R]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)

    @overload
    def __get__(self, store: None, owner: type | None = None) -> TableCall[P, R]: ...

    @overload
    def __get__(self, store: Store, owner: type | None = None) -> Callable[P, R]: ...

    def __get__(self, store: Store | None, owner: type | None = None) -> TableCall[P, R] | Callable[P, R]:
        if store is None:
            return self
        return types.MethodType(self.fn, store.db)

    def __call__(self, store: Store, *args: P.args, **kwargs: P.kwargs) -> R:
        """``Store.get_code(store, h)``: the unbound form, as for a plain method."""
        return self.fn(store.db, *args, **kwargs)


class Store:
    """Synchronous store; one connection, one transaction per call.

    Every method may block (disk, SQLite's lock): trio code uses
    :class:`~realtime.store.aio.AsyncStore`, admin tools and tests this.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open (creating if needed) the store at ``path``; see :meth:`Database.open`."""
        return cls(Database.open(path))

    @property
    def path(self) -> Path:
        return self.db.path

    @property
    def closed(self) -> bool:
        return self.db.closed

    def close(self) -> None:
        self.db.close()

    # -- authorization codes and refresh-token families ---------------------
    save_code = TableCall(grants.save_code)
    get_code = TableCall(grants.get_code)
    redeem_code = TableCall(grants.redeem_code)
    revoke_code_grant = TableCall(grants.revoke_code_grant)
    record_issue = TableCall(grants.record_issue)
    get_refresh = TableCall(grants.get_refresh)
    rotate_refresh = TableCall(grants.rotate_refresh)
    revoke_family = TableCall(grants.revoke_family)
    retry_refresh = TableCall(grants.retry_refresh)

    # -- revoked access tokens ----------------------------------------------
    revoke_jtis = TableCall(revoked.revoke_jtis)
    is_revoked = TableCall(revoked.is_revoked)
    revoked_jtis = TableCall(revoked.revoked_jtis)

    # -- revocation cut-offs by sub (POST /api/revoke) ----------------------
    add_cutoff = TableCall(cutoffs.add_cutoff)
    live_cutoffs = TableCall(cutoffs.live_cutoffs)
    cutoffs_sweep = TableCall(cutoffs.cutoffs_sweep)

    # -- consents -----------------------------------------------------------
    get_consent = TableCall(consents.get_consent)
    save_consent = TableCall(consents.save_consent)
    forget_consent = TableCall(consents.forget_consent)
    list_consents = TableCall(consents.list_consents)
    withdraw_grant = TableCall(consents.withdraw_grant)
    live_families_of = TableCall(grants.live_families_of)

    # -- device authorization grant (RFC 8628) -------------------------------
    save_device_code = TableCall(devices.save_device_code)
    get_device_by_user_code = TableCall(devices.get_device_by_user_code)
    decide_device_code = TableCall(devices.decide_device_code)
    poll_device_code = TableCall(devices.poll_device_code)
    redeem_device_code = TableCall(devices.redeem_device_code)

    # -- login sessions (OIDC) ----------------------------------------------
    save_login_session = TableCall(sessions.save_login_session)
    get_login_session = TableCall(sessions.get_login_session)
    end_login_session = TableCall(sessions.end_login_session)

    # -- the signing key ring of a shared store ([store] url) ----------------
    signing_key_rows = TableCall(signing_keys.signing_key_rows)
    signing_key_stamp = TableCall(signing_keys.signing_key_stamp)
    settle_signing_keys = TableCall(signing_keys.settle_signing_keys)
    add_signing_key = TableCall(signing_keys.add_signing_key)
    insert_signing_keys = TableCall(signing_keys.insert_signing_keys)
    prune_signing_keys = TableCall(signing_keys.prune_signing_keys)

    # -- external provider logins: pending ones, and the users they created --
    add_provider_login = TableCall(provider_logins.add_provider_login)
    take_provider_login = TableCall(provider_logins.take_provider_login)
    provider_logins_count = TableCall(provider_logins.provider_logins_count)
    add_provider_user = TableCall(provider_users.add_provider_user)
    provider_user_rows = TableCall(provider_users.provider_user_rows)
    provider_users_stamp = TableCall(provider_users.provider_users_stamp)

    # -- OAuth 1.0a ---------------------------------------------------------
    oauth1_use_nonce = TableCall(oauth1.oauth1_use_nonce)
    oauth1_save_request_token = TableCall(oauth1.oauth1_save_request_token)
    oauth1_get_request_token = TableCall(oauth1.oauth1_get_request_token)
    oauth1_authorize_request_token = TableCall(oauth1.oauth1_authorize_request_token)
    oauth1_delete_request_token = TableCall(oauth1.oauth1_delete_request_token)
    oauth1_exchange = TableCall(oauth1.oauth1_exchange)
    oauth1_get_access_token = TableCall(oauth1.oauth1_get_access_token)
    oauth1_revoke_access_token = TableCall(oauth1.oauth1_revoke_access_token)
    oauth1_sweep = TableCall(oauth1.oauth1_sweep)

    # -- housekeeping -------------------------------------------------------

    def sweep(self, now: float) -> dict[str, int]:
        """Delete OAuth 2 rows that can no longer matter, in one transaction;
        returns counts per table (the OAuth 1 tables: :meth:`oauth1_sweep`)."""
        return self.db.write(lambda c: {**grants.sweep(c, now), **revoked.sweep(c, now), **sessions.sweep(c, now),
                                        **devices.sweep(c, now), **provider_logins.sweep(c, now)})

    def counts(self) -> dict[str, int]:
        out = {}
        for table in ("codes", "families", "refresh_tokens", "revoked", "consents"):
            out[table] = self.db.read(f"SELECT count(*) FROM {table}")[0][0]
        return out
