"""The app registry (``apps.toml``), and the file-mode warnings for it and
the user list (whose reading is :mod:`realtime.config.users`).

The apps file is read into :class:`realtime.config.settings.App`
snapshots keyed by ``client_id``.  The checks here are the ones a wrong entry would otherwise turn
into a security hole or a confusing runtime failure: a secret stored in
clear, an ``http`` redirect to a remote host, a public client with a
secret, two entries with one identifier.
"""

from __future__ import annotations

import datetime
import math
import re
import urllib.parse
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from realtime.config.fields import (
    ConfigError,
    ConfigIssue,
    Source,
    array,
    boolean,
    choice,
    duration,
    nonempty,
    parse_toml,
    read_table,
    scope,
    string,
    type_name,
    unknown_key,
    wrong_type,
)
from realtime.config.locate import KeyPath
from realtime.config.sealed import SecretError, unpack
from realtime.config.settings import App, RetiredSecret, User

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", "password",
               "urn:ietf:params:oauth:grant-type:device_code")  # RFC 8628


def argon2_hash(value: Any) -> str:
    """A stored secret must be a hash: a clear secret in a file is a leak waiting."""
    if not string(value).startswith("$argon2"):
        raise ValueError("expected an argon2id hash ('$argon2id$...'), not a clear-text secret")
    return value


def client_id(value: Any) -> str:
    # RFC 6749 appendix A.1: client-id = *VSCHAR; we also refuse space and empty.
    if not re.fullmatch(r"[\x21-\x7e]+", string(value)):
        raise ValueError(f"{value!r} is not a client_id (printable ASCII without spaces)")
    return value


def timestamp(value: Any) -> float:
    """Epoch seconds, or an RFC 3339 date-time with an offset (TOML or text)."""
    if isinstance(value, bool):
        raise wrong_type("epoch seconds or an RFC 3339 date-time", value)
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"must be epoch seconds, got {value!r}")
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an RFC 3339 date-time") from None
    if not isinstance(value, datetime.datetime):
        raise wrong_type("epoch seconds or an RFC 3339 date-time", value)
    if value.tzinfo is None:
        raise ValueError("date-time needs a UTC offset, e.g. 2030-01-01T00:00:00Z")
    return value.timestamp()


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
# Schemes that run or read something in the user agent instead of reaching a client.
_UNSAFE_SCHEMES = {"javascript", "data", "file", "vbscript", "about", "blob", "filesystem"}


def redirect_uri(value: Any) -> str:
    """RFC 6749 §3.1.2: "The redirection endpoint URI MUST be an absolute URI
    ... The endpoint URI MUST NOT include a fragment component."  Plain
    ``http`` only for loopback (RFC 8252 §7.3); private-use schemes such
    as ``com.example.app:/cb`` for native apps (RFC 8252 §7.1)."""
    if any(c.isspace() or not c.isprintable() for c in string(value)):
        raise ValueError(f"{value!r} must not contain spaces or control characters")
    scheme, sep, rest = value.partition(":")
    if not sep or not _SCHEME.fullmatch(scheme) or not rest:
        raise ValueError(f"{value!r} is not an absolute URI (it needs a scheme, e.g. https://)")
    if "#" in value:
        raise ValueError(f"{value!r} must not have a fragment (RFC 6749 §3.1.2)")
    scheme = scheme.lower()
    if scheme in _UNSAFE_SCHEMES:
        raise ValueError(f"{value!r}: the {scheme}: scheme is not allowed")
    if scheme in ("http", "https"):
        parts = urllib.parse.urlsplit(value)
        try:
            parts.port
        except ValueError:
            raise ValueError(f"{value!r} has a bad port") from None
        if not rest.startswith("//") or not parts.hostname:
            raise ValueError(f"{value!r} has no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"{value!r} must not contain a user name or password")
        if scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ValueError(
                f"{value!r}: http is allowed only for localhost, 127.0.0.1 and [::1]; use https"
            )
    return value


def _passthrough(value: Any) -> Any:
    return value


def consumer_secret_enc(value: Any) -> str:
    """An OAuth 1.0a consumer secret as stored: AES-GCM under ``state_dir/oauth1.key``."""
    try:
        unpack(string(value))
    except SecretError as exc:
        raise ValueError(f"{exc} (made by `realtime app add --oauth1`)") from None
    return value


def rsa_public_key(value: Any) -> str:
    """A PEM ``PUBLIC KEY`` of at least 2048 bits, for RSA-SHA1 (RFC 5849 §3.4.3)."""
    try:
        key = load_pem_public_key(string(value).encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("expected a PEM RSA public key ('-----BEGIN PUBLIC KEY-----...')") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("expected an RSA public key")
    if key.key_size < 2048:
        raise ValueError(f"the RSA key has {key.key_size} bits; use at least 2048")
    return value


APP_FIELDS = {
    "name": nonempty,
    "client_id": client_id,
    "client_secret_hash": argon2_hash,
    "retired_secrets": _passthrough,  # checked element by element below, for line numbers
    "redirect_uris": array(redirect_uri),
    "grant_types": array(choice(*GRANT_TYPES)),
    "scopes": array(scope),
    "public": boolean,
    "access_token_ttl": duration(positive=True),
    "refresh_token_ttl": duration(positive=True),
    "oauth1": boolean,
    "consumer_key": client_id,  # same character rules as a client_id
    "consumer_secret_enc": consumer_secret_enc,
    "rsa_public_key": rsa_public_key,
    "oauth1_token_ttl": duration(positive=True),
    "post_logout_redirect_uris": array(redirect_uri),  # OIDC RP-initiated logout (exact match)
}
OAUTH1_KEYS = ("consumer_key", "consumer_secret_enc", "rsa_public_key", "oauth1_token_ttl")
RETIRED_FIELDS = {"hash": argon2_hash, "expires_at": timestamp}


def read_apps(file: Path, issues: list[ConfigIssue]) -> dict[str, App]:
    """Read ``apps.toml``; problems go to ``issues``, good apps are returned."""
    parsed = parse_toml(file, issues)
    if parsed is None:
        return {}
    data, source = parsed
    for key in data:
        if key != "app":
            source.error((key,), unknown_key(key, ["app"]))
    tables = data.get("app", [])
    if not isinstance(tables, list):
        source.error(("app",), f"expected [[app]] tables, got {type_name(tables)}")
        return {}
    apps: dict[str, App] = {}
    first_line: dict[str, int | None] = {}
    consumer_lines: dict[str, int | None] = {}
    for n, table in enumerate(tables):
        path: KeyPath = ("app", n)
        app = _read_app(source, table, path)
        if app is None:
            continue
        line = source.line(path + ("client_id",))
        if app.client_id in apps:
            source.error(
                path + ("client_id",),
                f"duplicate client_id {app.client_id!r} (lines {first_line[app.client_id]} and {line})",
            )
            continue
        if app.consumer_key is not None:
            key_line = source.line(path + ("consumer_key",))
            if app.consumer_key in consumer_lines:
                source.error(
                    path + ("consumer_key",),
                    f"duplicate consumer_key (lines {consumer_lines[app.consumer_key]} and {key_line})",
                )
                continue
            consumer_lines[app.consumer_key] = key_line
        apps[app.client_id] = app
        first_line[app.client_id] = line
    return apps


def _read_app(source: Source, table: Any, path: KeyPath) -> App | None:
    fields = read_table(source, table, path, APP_FIELDS, required=("name", "client_id"))
    if fields is None:
        return None
    retired = fields.pop("retired_secrets", [])
    if not isinstance(retired, list):
        source.error(path + ("retired_secrets",), f"expected an array of tables, got {type_name(retired)}")
        retired = []
    secrets = []
    for n, item in enumerate(retired):
        got = read_table(source, item, path + ("retired_secrets", n), RETIRED_FIELDS, required=RETIRED_FIELDS)
        if got is not None and len(got) == len(RETIRED_FIELDS):
            secrets.append(RetiredSecret(**got))
    if "grant_types" in fields:
        fields["grant_types"] = tuple(dict.fromkeys(fields["grant_types"]))
    public = fields.get("public", False)
    has_secret = "client_secret_hash" in table
    if "public" in table and "public" not in fields:
        pass  # a bad `public` is already reported; which rule applies is unknown
    elif public and has_secret:
        source.error(path + ("client_secret_hash",), "a public app (public = true) must not have a secret")
    elif not public and not has_secret:
        source.error(path, "a confidential app needs client_secret_hash (or set public = true)")
    if "grant_types" not in fields and "grant_types" in table:
        grants: tuple[str, ...] = ()  # already reported; derive nothing from a bad list
    else:
        grants = fields.get("grant_types", attrs.fields(App).grant_types.default)
    if public and "client_credentials" in grants:
        # RFC 6749 §4.4: "The client credentials grant type MUST only be used by confidential clients."
        source.error(path + ("grant_types",), "client_credentials needs a confidential app, not a public one")
    uris_ok = "redirect_uris" in fields or "redirect_uris" not in table  # else already reported
    if "authorization_code" in grants and uris_ok and not fields.get("redirect_uris"):
        source.error(path + ("redirect_uris",), "authorization_code needs at least one redirect URI")
    _check_oauth1(source, table, fields, path)
    if not {"name", "client_id"} <= fields.keys():
        return None
    return App(retired_secrets=tuple(secrets), **fields)


def _check_oauth1(source: Source, table: dict[str, Any], fields: dict[str, Any], path: KeyPath) -> None:
    """``oauth1 = true`` needs a ``consumer_key`` and a way to check
    signatures (an encrypted secret for HMAC/PLAINTEXT, or an RSA key);
    the OAuth 1 keys mean nothing without it."""
    if "oauth1" in table and "oauth1" not in fields:
        return  # a bad `oauth1` is already reported
    if fields.get("oauth1", False):
        if "consumer_key" not in table:
            source.error(path + ("consumer_key",), "oauth1 = true needs a consumer_key")
        if "consumer_secret_enc" not in table and "rsa_public_key" not in table:
            source.error(path, "oauth1 = true needs consumer_secret_enc or rsa_public_key")
        return
    for key in OAUTH1_KEYS:
        if key in table:
            source.error(path + (key,), f"{key} is used only with oauth1 = true")
            fields.pop(key, None)


def load_apps(path: Path) -> dict[str, App]:
    """The app registry in ``path`` by ``client_id``.

    Raises:
        ConfigError: with every problem found in the file.
    """
    issues: list[ConfigIssue] = []
    apps = read_apps(path, issues)
    if issues:
        raise ConfigError(issues)
    return apps


# -- file modes ------------------------------------------------------------------


def readable_secrets_warnings(apps_file: Path | None, apps: dict[str, App],
                              users_file: Path | None, users: dict[str, User]) -> list[str]:
    """A warning for each file holding password or secret hashes that
    others than its owner may read (group or world read bit).

    A warning, not an error: the server still works, and a deployment may
    have a reason (a group shared with a config tool); the operator's
    commands write these files 0600 anyway.
    """
    holders = []
    if apps_file is not None and any(a.client_secret_hash or a.consumer_secret_enc for a in apps.values()):
        holders.append((apps_file, "client secret hashes"))
    if users_file is not None and any(u.password_hash for u in users.values()):
        holders.append((users_file, "password hashes"))
    warnings = []
    for file, what in holders:
        try:
            mode = file.stat().st_mode & 0o777
        except OSError:
            continue
        if mode & 0o044:
            who = " and ".join(w for bit, w in ((0o040, "its group"), (0o004, "every user")) if mode & bit)
            warnings.append(f"{file}: holds {what} and is readable by {who} (mode {mode:04o}); "
                            f"fix: chmod 600 {file}")
    return warnings
