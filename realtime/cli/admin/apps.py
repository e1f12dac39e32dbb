"""``realtime app add | rotate-secret | remove``: edit ``apps.toml`` with tomlkit."""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import tomlkit

from realtime.cli.admin.files import AdminError, Paths, check_value, notify, user_names
from realtime.config.apps import redirect_uri, rsa_public_key
from realtime.config.edit import atomic_write, load_toml, locked
from realtime.config.fields import nonempty, scope
from realtime.config.units import parse_duration
from realtime.oauth.passwords import hash_secret
from realtime.oauth1 import crypto


def _apps_of(doc: tomlkit.TOMLDocument, path: Path) -> Any:
    apps = doc.get("app")
    if apps is None:
        return None
    if not isinstance(apps, list):
        raise AdminError(f"{path}: 'app' must be an array of tables ([[app]])")
    return apps


def _find_app(doc: tomlkit.TOMLDocument, path: Path, client_id: str) -> tuple[Any, int]:
    apps = _apps_of(doc, path) or []
    for n, table in enumerate(apps):
        if isinstance(table, dict) and table.get("client_id") == client_id:
            return apps, n
    raise AdminError(f"{path}: no app with client_id {client_id!r}")


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32]
    return slug or "app"


def cmd_app_add(args: argparse.Namespace) -> int:
    paths = Paths(args.config)
    rsa_pem = _read_rsa_key(args)
    check_value("name", args.name, nonempty)
    uris = list(dict.fromkeys(args.redirect_uri or []))
    for uri in uris:
        check_value("redirect URI", uri, redirect_uri)
    logout_uris = list(dict.fromkeys(getattr(args, "post_logout_redirect_uri", None) or []))
    for uri in logout_uris:
        check_value("post-logout redirect URI", uri, redirect_uri)
    # An OAuth 1-only app without redirect URIs (oob callbacks) needs no OAuth 2 grant.
    default_grants = [] if args.oauth1 and not uris else ["authorization_code", "refresh_token"]
    grants = list(dict.fromkeys(args.grant if args.grant is not None else default_grants))
    scopes = list(dict.fromkeys(args.scope or []))
    for s in scopes:
        check_value("scope", s, scope)
    if "authorization_code" in grants and not uris:
        raise AdminError("the authorization_code grant needs at least one --redirect-uri")
    if args.public and "client_credentials" in grants:
        raise AdminError("client_credentials needs a confidential app (drop --public)")

    secret = None if args.public else secrets.token_urlsafe(32)
    secret_hash = hash_secret(secret) if secret is not None else None  # argon2 before the lock
    # A client_id never equals a user's name: a client token's sub is its client_id.
    users = user_names(paths)
    with locked(paths.apps):
        doc = load_toml(paths.apps)
        apps = _apps_of(doc, paths.apps)
        taken = {str(t.get("client_id")).casefold() for t in apps or () if isinstance(t, dict)} | users
        while True:
            client_id = f"{_slug(args.name)}-{secrets.token_hex(4)}"
            if client_id.casefold() not in taken:
                break
        table = tomlkit.table()
        table["name"] = args.name
        table["client_id"] = client_id
        if secret_hash is None:
            table["public"] = True
        else:
            table["client_secret_hash"] = secret_hash
        table["redirect_uris"] = uris
        table["grant_types"] = grants
        table["scopes"] = scopes
        if logout_uris:
            table["post_logout_redirect_uris"] = logout_uris
        consumer = _oauth1_consumer(paths, table, rsa_pem) if args.oauth1 else None
        if apps is None:
            aot = tomlkit.aot()
            aot.append(table)
            doc["app"] = aot
        else:
            apps.append(table)
        atomic_write(paths.apps, tomlkit.dumps(doc))
    print(f"client_id: {client_id}")
    if secret is not None:
        print(f"client_secret: {secret}")
    if consumer is not None:
        print(f"consumer_key: {consumer[0]}")
        if consumer[1] is not None:
            print(f"consumer_secret: {consumer[1]}")
    if secret is not None or (consumer is not None and consumer[1] is not None):
        print("note: secrets are shown only this once; store them now", file=sys.stderr)
    notify(paths)
    return 0


def _read_rsa_key(args: argparse.Namespace) -> str | None:
    path = getattr(args, "rsa_public_key", None)
    if path is None:
        return None
    if not args.oauth1:
        raise AdminError("--rsa-public-key needs --oauth1")
    try:
        pem = Path(path).read_text(encoding="ascii").strip() + "\n"
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminError(f"{path}: cannot read: {exc}") from None
    check_value("RSA public key", pem, rsa_public_key)
    return pem


def _oauth1_consumer(paths: Paths, table: Any, rsa_pem: str | None) -> tuple[str, str | None]:
    """Make OAuth 1.0a consumer credentials for ``table``.

    The consumer secret (for HMAC-SHA1/-SHA256 and PLAINTEXT) is stored
    AES-GCM-encrypted under the key the server uses (``state_dir/oauth1.key``,
    or derived from ``[store] key_file`` with ``[store] url``); with an RSA
    public key the secret is still issued, so the consumer may use either method.
    """
    store = paths.raw.get("store") if isinstance(paths.raw.get("store"), dict) else {}
    named = store.get("key_file") if store.get("url") else None  # as the loader resolves it
    key_file = paths.config.parent / Path(str(named)).expanduser() if named else None
    try:
        key = crypto.key_for(paths.state_dir, key_file)
    except (OSError, crypto.SecretError) as exc:
        raise AdminError(f"{key_file or paths.state_dir / crypto.KEY_FILE}: {exc}") from None
    consumer_key = "ck-" + secrets.token_hex(16)
    consumer_secret = secrets.token_urlsafe(32)
    table["oauth1"] = True
    table["consumer_key"] = consumer_key
    table["consumer_secret_enc"] = crypto.encrypt(key, consumer_secret, crypto.consumer_context(consumer_key))
    if rsa_pem is not None:
        table["rsa_public_key"] = tomlkit.string(rsa_pem, multiline=True)
    return consumer_key, consumer_secret


def cmd_app_rotate(args: argparse.Namespace) -> int:
    paths = Paths(args.config)
    try:
        grace = parse_duration(args.grace)
    except ValueError as exc:
        raise AdminError(f"bad --grace: {exc}") from None
    secret = secrets.token_urlsafe(32)
    secret_hash = hash_secret(secret)  # argon2 before the lock
    with locked(paths.apps):
        doc = load_toml(paths.apps)
        apps, n = _find_app(doc, paths.apps, args.client_id)
        table = apps[n]
        if table.get("public") or "client_secret_hash" not in table:
            raise AdminError(f"{paths.apps}: app {args.client_id!r} is public and has no secret")
        now = time.time()
        retired = tomlkit.array()
        for item in table.get("retired_secrets", []):
            if isinstance(item, dict) and float(item.get("expires_at", 0)) > now:
                retired.append(_inline(hash=str(item["hash"]), expires_at=int(item["expires_at"])))
        if grace > 0:
            retired.append(_inline(hash=str(table["client_secret_hash"]), expires_at=int(now + grace + 0.999)))
        table["client_secret_hash"] = secret_hash
        if len(retired):
            table["retired_secrets"] = retired
        elif "retired_secrets" in table:
            del table["retired_secrets"]
        atomic_write(paths.apps, tomlkit.dumps(doc))
    print(f"client_id: {args.client_id}")
    print(f"client_secret: {secret}")
    if grace > 0:
        print(f"note: the old secret keeps working for {args.grace}", file=sys.stderr)
    notify(paths)
    return 0


def _inline(**values: Any) -> Any:
    table = tomlkit.inline_table()
    table.update(values)
    return table


def cmd_app_remove(args: argparse.Namespace) -> int:
    paths = Paths(args.config)
    with locked(paths.apps):
        doc = load_toml(paths.apps)
        apps, n = _find_app(doc, paths.apps, args.client_id)
        del apps[n]
        atomic_write(paths.apps, tomlkit.dumps(doc))
    print(f"removed app {args.client_id}", file=sys.stderr)
    notify(paths)
    return 0


