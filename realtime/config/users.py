"""The user list (``users.json`` or ``users.toml``) and the rules for a
user's name and a new password.

The file is read into :class:`realtime.config.settings.User` snapshots
keyed by name; a user named like an app's ``client_id`` is refused, since
the two share the token's ``sub``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Collection

from realtime.config.apps import argon2_hash
from realtime.config.fields import (
    ConfigError,
    ConfigIssue,
    array,
    boolean,
    integer,
    optional,
    parse_json,
    parse_toml,
    read_table,
    scope,
    string,
    type_name,
    unknown_key,
)
from realtime.config.settings import User

def user_name(value: Any) -> str:
    """The user's ``sub``.  ':' is kept for external-provider users (``NAME:ID``)."""
    if not string(value) or value != value.strip() or ":" in value or not value.isprintable():
        raise ValueError(f"{value!r} is not a user name (non-empty, printable, no ':' or outer spaces)")
    return value


def user_name_with(providers: "Collection[str]") -> Any:
    """:func:`user_name`, also taking ``NAME:ID`` where NAME is a configured
    login provider (its users' ``sub``, SPEC §2)."""

    def convert(value: Any) -> str:
        prefix, sep, rest = string(value).partition(":")
        if sep and prefix in providers:
            if not rest or rest != rest.strip() or not value.isprintable():
                raise ValueError(f"{value!r} is not a provider user name ({prefix}:ID, ID printable)")
            return value
        if sep:
            known = ", ".join(sorted(providers)) or "none configured"
            raise ValueError(
                f"{value!r}: ':' is kept for provider users NAME:ID, and {prefix!r} is not a provider ({known})"
            )
        return user_name(value)

    return convert


# NIST SP 800-63B §5.1.1.1: memorized secrets "SHALL be at least 8
# characters in length", the floor kept by default so that SPEC §1's
# `realtime user add` takes the passwords its clients already use.  OWASP
# ASVS 4.0 2.1.1 recommends 12: operators raise [oauth] min_password_length.
# ASVS 2.1.2 allows at least 64, and the cap bounds the argon2 input.
DEFAULT_MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

#: ``[oauth] min_password_length``: 1 .. MAX_PASSWORD_LENGTH.
password_length = integer(1, MAX_PASSWORD_LENGTH)


def password_policy(min_length: int) -> Any:
    """A check of a new password: ``min_length`` to MAX_PASSWORD_LENGTH
    characters (code points, as ASVS counts them)."""

    def check(password: str) -> str:
        if len(password) < min_length:
            raise ValueError(f"must be at least {min_length} characters long, got {len(password)} "
                             "([oauth] min_password_length)")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise ValueError(f"must be at most {MAX_PASSWORD_LENGTH} characters long, got {len(password)}")
        return password

    return check


def email(value: Any) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", string(value)):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


USER_FIELDS = {
    "name": user_name,
    "password_hash": optional(argon2_hash),
    "scopes": array(scope),
    "disabled": boolean,
    "display_name": optional(string),
    "email": optional(email),
}


def read_users(file: Path, issues: list[ConfigIssue], providers: "Collection[str]" = (),
               client_ids: "Collection[str]" = ()) -> dict[str, User]:
    """Read ``users.json`` (``{"users": [...]}`` or a list) or ``users.toml`` (``[[user]]``).

    ``providers``: the configured login provider names, whose users
    (``NAME:ID``) may appear here.  ``client_ids``: the registered apps';
    a user may not be named like one (case aside), since a
    ``client_credentials`` token's ``sub`` is its client_id (RFC 9068
    §2.2) and a user's tokens carry the user's name there: the two must
    never meet (RFC 9700 §4.15, "Client Impersonating Resource Owner").
    """
    taken_by_apps = {c.casefold() for c in client_ids}
    fields_spec = dict(USER_FIELDS, name=user_name_with(frozenset(providers))) if providers else USER_FIELDS
    if file.suffix.lower() == ".toml":
        parsed = parse_toml(file, issues)
        if parsed is None:
            return {}
        data, source = parsed
        for key in data:
            if key != "user":
                source.error((key,), unknown_key(key, ["user"]))
        items, base = data.get("user", []), ("user",)
        if not isinstance(items, list):
            source.error(base, f"expected [[user]] tables, got {type_name(items)}")
            return {}
    else:
        parsed_json = parse_json(file, issues)
        if parsed_json is None:
            return {}
        data, source = parsed_json
        if isinstance(data, list):
            items, base = data, ()
        elif isinstance(data, dict):
            for key in data:
                if key != "users":
                    source.error((key,), unknown_key(key, ["users"]))
            items, base = data.get("users", []), ("users",)
            if not isinstance(items, list):
                source.error(base, f"expected an array of users, got {type_name(items)}")
                return {}
        else:
            source.whole_file(f'expected {{"users": [...]}} or an array of users, got {type_name(data)}', 1)
            return {}
    users: dict[str, User] = {}
    seen: dict[str, tuple[str, int | None]] = {}  # casefolded name -> (name, line)
    for n, item in enumerate(items):
        path = base + (n,)
        fields = read_table(source, item, path, fields_spec, required=("name",))
        if not fields or "name" not in fields:
            continue
        name, line = fields["name"], source.line(path + ("name",))
        folded = name.casefold()
        if folded in seen:
            other, other_line = seen[folded]
            what = f"duplicate name {name!r}" if other == name else (
                f"name {name!r} differs only in case from {other!r}"
            )
            source.error(path + ("name",), f"{what} (lines {other_line} and {line})")
            continue
        seen[folded] = (name, line)
        if folded in taken_by_apps:
            source.error(path + ("name",), f"{name!r} is the client_id of an app; a user cannot share it "
                         "(a client token's sub is its client_id): rename the user")
            continue
        users[name] = User(**fields)
    return users


def load_users(path: Path) -> dict[str, User]:
    """The users in ``path`` by name.

    Raises:
        ConfigError: with every problem found in the file.
    """
    issues: list[ConfigIssue] = []
    users = read_users(path, issues)
    if issues:
        raise ConfigError(issues)
    return users
