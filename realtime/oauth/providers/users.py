"""Users created by a provider's first login, on a shared store.

A node alone adds such a user to its users file
(:func:`realtime.oauth.callback.create_user`), where the operator sees,
disables and removes it like any other.  Nodes on a shared store
(``[store] url``) have no shared file, so the user goes into the store
(:mod:`realtime.store.provider_users`) and every node merges the stored
users into its snapshot's ``users``: at start, after every reload, and
whenever :func:`refresh` (polled by the shell) sees the table change, so
a user created on node B is known on node A within :data:`POLL_INTERVAL`
(until then A refuses that user's session and tokens as unknown).
Every lookup (login, token grants, ``userinfo``, ``/account``, the
WebSocket gate) reads that one merged dict.

Precedence and clashes:

- the users file wins: a stored user whose name is also in the file is
  the file's user (that is how an operator disables, re-scopes or takes
  over a provider user on a shared store: add it to the file);
- a stored user whose name differs only in case from a file user is left
  out (logged), as the users file itself refuses such pairs;
- the store keeps one user per name ignoring case (``name_key``); a
  first login whose name clashes in case with a stored one is refused;
- a stored user of a provider this node does not configure (removed, or
  not yet added here) is left out, logged once: a users file naming such
  a user does not load at all, and a user of an unconfigured provider
  exists nowhere else either.
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping, Protocol

import attrs

from realtime.config.settings import Settings, User
from realtime.store.calls import StoreCalls
from realtime.store.provider_users import StoredUser

log = logging.getLogger("realtime.oauth.providers")

#: Seconds between two looks at the stored users (the shell's poll).
POLL_INTERVAL = 0.25

#: Stored users already logged as left out for an unconfigured provider
#: (each is logged once per process, not at every merge).
_reported_unconfigured: set[str] = set()


def as_user(row: StoredUser) -> User:
    return User(name=row.name, scopes=tuple(sorted(row.scopes)), display_name=row.display_name, email=row.email)


@attrs.define
class ProviderUsers:
    """The stored users this node knows, and the store's stamp when it read them."""

    users: dict[str, User] = attrs.field(factory=dict)
    stamp: tuple[int, float] | None = None

    def replace(self, rows: Iterable[StoredUser], stamp: tuple[int, float] | None) -> None:
        self.users = {row.name: as_user(row) for row in rows}
        self.stamp = stamp

    def add(self, user: User) -> None:
        self.users[user.name] = user


def merged(settings: Settings, stored: Mapping[str, User], previous: Mapping[str, User] | None = None) -> Settings:
    """``settings`` with the ``stored`` users added under the users file's.

    ``previous``: the stored users merged into ``settings`` before (they
    are taken out first, so a user gone from the store goes here too);
    None for a snapshot fresh from the files.
    """
    previous = previous or {}
    from_file = {name: user for name, user in settings.users.items() if previous.get(name) is not user}
    if not stored and len(from_file) == len(settings.users):
        return settings
    folded = {name.casefold(): name for name in from_file}
    users = dict(from_file)
    for name, user in stored.items():
        provider = name.partition(":")[0]
        if provider not in settings.providers:
            if name not in _reported_unconfigured:
                _reported_unconfigured.add(name)
                log.warning("provider user %s left out: provider %r is not configured here", name, provider)
            continue
        other = folded.get(name.casefold())
        if other is None:
            users[name] = user
        elif other != name:
            log.warning("provider user %s left out: the users file has %s, which differs only in case", name, other)
    return attrs.evolve(settings, users=users)


class _Services(Protocol):
    store: StoreCalls
    provider_users: ProviderUsers


class SharedUsersApp(Protocol):
    """What :func:`refresh` reads and replaces (the application object)."""

    settings: Settings

    @property
    def oauth(self) -> _Services: ...


async def refresh(state: SharedUsersApp) -> bool:
    """Take the stored users into ``state.settings`` when the store's stamp
    changed (a first login on any node); True when it did."""
    known = state.oauth.provider_users
    before = known.users
    stamp = await state.oauth.store.provider_users_stamp()
    if stamp == known.stamp:
        return False
    known.replace(await state.oauth.store.provider_user_rows(), stamp)
    state.settings = merged(state.settings, known.users, before)
    return True


async def learn(state: SharedUsersApp, name: str) -> bool:
    """Look for ``name`` in the shared store once, before refusing it: a
    user whose first login was on another node is unknown here until the
    next poll (up to :data:`POLL_INTERVAL`), and its code may be exchanged
    here first.  True when the snapshot has the user now.  Only for a
    provider user's name on a shared store: no store read otherwise."""
    settings = state.settings
    if settings.store.url is None or name.partition(":")[0] not in settings.providers or ":" not in name:
        return False
    await refresh(state)
    return name in state.settings.users
