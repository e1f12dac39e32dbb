"""``realtime user add | passwd | disable | enable``: edit ``users.json``/``.toml``."""

from __future__ import annotations

import argparse
import getpass
import sys

from realtime.cli.admin.files import AdminError, Paths, check_value, client_ids, min_password_length, notify
from realtime.config.users import email, password_policy, user_name_with
from realtime.config.edit import UserFile, locked
from realtime.config.fields import scope
from realtime.config.providers import provider_names
from realtime.oauth.passwords import hash_secret


def _read_password(args: argparse.Namespace, paths: Paths) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    else:
        password = getpass.getpass("Password: ")
        again = getpass.getpass("Password (again): ")
        if password != again:
            raise AdminError("the passwords do not match")
    if not password:
        raise AdminError("the password must not be empty")
    check_value("password", password, password_policy(min_password_length(paths)))
    return password


def cmd_user_add(args: argparse.Namespace) -> int:
    paths = Paths(args.config)
    providers = frozenset()
    if isinstance(paths.oauth.get("providers"), str):
        providers = provider_names(paths.config.parent / paths.oauth["providers"])
    check_value("user name", args.name, user_name_with(providers))
    # A provider user (NAME:ID) signs in at the provider: no password unless one is piped in.
    provider_user = args.name.partition(":")[0] in providers and ":" in args.name
    for s in args.scope or []:
        check_value("scope", s, scope)
    if args.email:
        check_value("e-mail", args.email, email)
    # One namespace for token subjects: a client_credentials token has
    # sub = client_id (RFC 9068 §2.2), so no user may carry that name.
    if args.name.casefold() in client_ids(paths):
        raise AdminError(f"{paths.apps}: {args.name!r} is the client_id of an app; "
                         "a user cannot share it (token subjects would collide)")
    if UserFile(paths.users).exists(args.name):  # early, before asking for a password
        raise AdminError(f"{paths.users}: a user named {args.name!r} exists already")
    password_hash = hash_secret(_read_password(args, paths)) if not provider_user or args.password_stdin else None
    with locked(paths.users):  # argon2 ran outside: the lock is held for milliseconds
        users = UserFile(paths.users)
        if users.exists(args.name):
            raise AdminError(f"{paths.users}: a user named {args.name!r} exists already")
        users.add_user(args.name, list(dict.fromkeys(args.scope or [])), password_hash=password_hash,
                       display_name=args.display_name, email=args.email)
        users.save()
    print(f"added user {args.name}", file=sys.stderr)
    notify(paths)
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    paths = Paths(args.config)
    UserFile(paths.users).find(args.name)  # early, before asking for a password
    password_hash = hash_secret(_read_password(args, paths))
    with locked(paths.users):
        users = UserFile(paths.users)
        users.find(args.name)["password_hash"] = password_hash
        users.save()
    print(f"password changed for {args.name}", file=sys.stderr)
    notify(paths)
    return 0


def _shared_store_user_hint(paths: Paths, name: str) -> str | None:
    """On a shared store a provider's first login stores its user in the
    database, not in the users file: what to do to change such a user."""
    store = paths.raw.get("store")
    if not (isinstance(store, dict) and store.get("url")) or ":" not in name:
        return None
    return (f"{paths.users}: no user named {name!r} in the users file; a provider user created on a shared"
            f" store lives in the database. The users file wins over the store: add it there first"
            f" (`realtime user add {name} --scope ...`, with the scopes it should keep), then disable or enable it")


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    paths = Paths(args.config)
    with locked(paths.users):
        users = UserFile(paths.users)
        if not users.exists(args.name) and (hint := _shared_store_user_hint(paths, args.name)):
            raise AdminError(hint)
        user = users.find(args.name)
        if disabled:
            user["disabled"] = True
        elif "disabled" in user:
            del user["disabled"]
        users.save()
    print(f"{'disabled' if disabled else 'enabled'} user {args.name}", file=sys.stderr)
    notify(paths)
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, True)


def cmd_user_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False)


