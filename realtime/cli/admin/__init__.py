"""Operator commands: ``realtime app|user|key ...`` (SPEC §1).

Each command edits one file the operator owns — ``apps.toml`` through
tomlkit so comments and layout survive, ``users.json`` with ``json``
(indent 2) or ``users.toml`` with tomlkit — under an exclusive lock on a
sidecar ``.NAME.lock`` for the whole read-modify-write, writes it
atomically (temp file in the same directory, fsync, rename, mode 0600),
then asks a running server to reload (SIGHUP to the pid in
``state_dir/realtime.pid``, only while the server holds that file's lock).

Secrets are printed once and stored only as argon2id hashes.  Notes go
to stderr so that stdout carries just the ``client_id: ...`` /
``client_secret: ...`` lines a script may read.

The file locations come from the raw ``realtime.toml`` (not the full
validation of :func:`realtime.config.load.load_settings`), so these commands
can create a registry that does not exist yet and repair one that does
not validate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from realtime.cli.admin.apps import cmd_app_add, cmd_app_remove, cmd_app_rotate
from realtime.cli.admin.files import DEFAULT_CONFIG, GRANT_TYPES, AdminError, Paths, notify_server
from realtime.config.edit import EditError, atomic_write
from realtime.cli.admin.keys import cmd_key_rotate
from realtime.cli.admin.store import cmd_store_migrate
from realtime.cli.admin.store_copy import cmd_store_copy
from realtime.cli.admin.users import cmd_user_add, cmd_user_disable, cmd_user_enable, cmd_user_passwd

__all__ = ["AdminError", "Paths", "add_subcommands", "atomic_write", "notify_server"]

# -- argparse --------------------------------------------------------------------


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """The ``-c/--config`` option every command shares."""
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                        help=f"config file (default {DEFAULT_CONFIG})")


def _run(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except EditError as exc:  # AdminError, or the file editor's own
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 1

    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


def add_subcommands(subparsers: Any) -> None:
    """Add ``app``, ``user``, ``key`` and ``store`` to the ``realtime`` command line."""
    app = subparsers.add_parser("app", help="register and manage OAuth applications")
    app_sub = app.add_subparsers(dest="app_command", required=True, metavar="ACTION")

    add = app_sub.add_parser("add", help="register an app; prints client_id and client_secret once")
    add_config_option(add)
    add.add_argument("name", metavar="NAME")
    add.add_argument("--redirect-uri", nargs="+", action="extend", metavar="URI", default=None)
    add.add_argument("--public", action="store_true", help="a public client (no secret, PKCE required)")
    add.add_argument("--grant", nargs="+", action="extend", choices=GRANT_TYPES, metavar="G", default=None)
    add.add_argument("--scope", nargs="+", action="extend", metavar="S", default=None)
    add.add_argument("--oauth1", action="store_true", help="also issue OAuth 1.0a consumer credentials")
    add.add_argument("--rsa-public-key", metavar="PEM_FILE", default=None,
                     help="with --oauth1: register an RSA public key for RSA-SHA1 signatures")
    add.add_argument("--post-logout-redirect-uri", nargs="+", action="extend", metavar="URI", default=None,
                     help="where /oauth2/logout may send the browser back (OIDC RP-initiated logout)")
    add.set_defaults(func=_run(cmd_app_add))

    rot = app_sub.add_parser("rotate-secret", help="new client secret; the old one works until --grace ends")
    add_config_option(rot)
    rot.add_argument("client_id", metavar="CLIENT_ID")
    rot.add_argument("--grace", default="1h", metavar="DURATION", help="how long the old secret stays valid (default 1h)")
    rot.set_defaults(func=_run(cmd_app_rotate))

    rm = app_sub.add_parser("remove", help="remove an app")
    add_config_option(rm)
    rm.add_argument("client_id", metavar="CLIENT_ID")
    rm.set_defaults(func=_run(cmd_app_remove))

    user = subparsers.add_parser("user", help="manage local users")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    uadd = user_sub.add_parser("add", help="add a user")
    add_config_option(uadd)
    uadd.add_argument("name", metavar="NAME")
    uadd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    uadd.add_argument("--scope", nargs="+", action="extend", metavar="S", default=None)
    uadd.add_argument("--display-name", default=None)
    uadd.add_argument("--email", default=None)
    uadd.set_defaults(func=_run(cmd_user_add))

    passwd = user_sub.add_parser("passwd", help="set a user's password")
    add_config_option(passwd)
    passwd.add_argument("name", metavar="NAME")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(func=_run(cmd_user_passwd))

    for action, func, text in (("disable", cmd_user_disable, "disable a user (logins and refreshes stop)"),
                               ("enable", cmd_user_enable, "enable a disabled user")):
        p = user_sub.add_parser(action, help=text)
        add_config_option(p)
        p.add_argument("name", metavar="NAME")
        p.set_defaults(func=_run(func))

    key = subparsers.add_parser("key", help="manage signing keys")
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    krot = key_sub.add_parser("rotate", help="new active signing key; old keys verify until their tokens expire")
    add_config_option(krot)
    krot.set_defaults(func=_run(cmd_key_rotate))

    store = subparsers.add_parser("store", help="the PostgreSQL store ([store] url)")
    store_sub = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    migrate = store_sub.add_parser("migrate", help="create or upgrade the schema; write [store] key_file if missing")
    add_config_option(migrate)
    migrate.set_defaults(func=_run(cmd_store_migrate))
    copy = store_sub.add_parser("copy", help="copy a stopped node's SQLite state and key ring into a migrated, "
                                             "empty database")
    add_config_option(copy)
    copy.add_argument("--to", required=True, metavar="URL", help="the PostgreSQL database (postgresql://...)")
    copy.set_defaults(func=_run(cmd_store_copy))
