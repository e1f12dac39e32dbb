"""Read ``realtime.toml`` and the files it names into one :class:`Settings`.

:func:`load_settings` is the one way in for ``serve``, ``check`` and
reload (DESIGN.md §7): it reads every file, checks every key, and either
returns a complete snapshot or raises :class:`ConfigError` with *all* the
problems found, each naming file, line and key, so the running server can
keep its old snapshot and log exactly what to fix.

Relative paths in ``realtime.toml`` (``tls_cert``, ``tls_key``,
``state_dir``, ``apps``, ``users``, ``providers``) are relative to the
directory of that file, so ``realtime serve -c /etc/realtime/realtime.toml``
behaves the same from any working directory.  Command-line overrides
(``--state-dir``) are relative to the working directory, as a shell user
expects.
"""

from __future__ import annotations

import logging
import ipaddress
import urllib.parse
from pathlib import Path
from typing import Any

from realtime.config.apps import load_apps, read_apps, readable_secrets_warnings
from realtime.config.users import load_users, password_length, read_users
from realtime.config.providers import read_providers
from realtime.config.webhooks import read_webhooks
from realtime.config.redact import redact_url
from realtime.config.fields import (
    ConfigError,
    ConfigIssue,
    Converter,
    Source,
    address,
    array,
    boolean,
    choice,
    duration,
    file_path,
    integer,
    nonempty,
    parse_toml,
    rate,
    read_table,
    scope,
    string,
    type_name,
    unknown_key,
    url_path,
)
from realtime.config.settings import (
    AdminSettings,
    ApiSettings,
    MetricsSettings,
    App,
    BrokerSettings,
    ChannelRule,
    DemoSettings,
    OAuthSettings,
    ServerSettings,
    Settings,
    StoreSettings,
    WebSocketSettings,
)
from realtime.config.overrides import apply_overrides, default_settings, overrides_into
from realtime.config.tls_files import check_tls

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "apply_overrides",
    "check",
    "default_settings",
    "load_apps",
    "load_settings",
    "load_users",
]

SIGNING_ALGS = ("RS256", "ES256", "EdDSA")
log = logging.getLogger("realtime.config")

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def public_url(value: Any) -> str:
    """The issuer (RFC 8414 §2: "https" scheme, no query or fragment); http is
    allowed for local development behind a proxy."""
    parts = urllib.parse.urlsplit(string(value))
    shown = redact_url(value)
    try:
        parts.port
    except ValueError:
        raise ValueError(f"{shown!r} has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not value.startswith(parts.scheme + "://"):
        raise ValueError(f"must be an absolute http(s) URL like https://example.com, got {shown!r}")
    if "?" in value or "#" in value:
        raise ValueError(f"must not have a query or fragment, got {shown!r}")
    if parts.username is not None or parts.password is not None or any(c.isspace() for c in value):
        raise ValueError(f"must not contain spaces, a user name or a password, got {shown!r}")
    return value


def origin(value: Any) -> str:
    """An Origin header value (RFC 6454): ``scheme://host[:port]``, no path."""
    parts = urllib.parse.urlsplit(string(value))
    if not parts.scheme or not parts.netloc or value != f"{parts.scheme}://{parts.netloc}":
        raise ValueError(f"{value!r} is not an origin like https://example.com (no path or slash)")
    return value


def broker_url(value: Any) -> str:
    parts = urllib.parse.urlsplit(string(value))
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise ValueError(f"must be a redis://HOST:PORT/DB URL, got {redact_url(value)!r}")
    return value


def store_url(value: Any) -> str:
    """``[store] url``: a libpq URL (``postgresql://USER:PASSWORD@HOST:PORT/DB``,
    or ``postgresql:///DB?host=/run/postgresql`` for a socket)."""
    text = string(value)
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port
    except ValueError:
        raise ValueError(f"must be a postgresql://USER@HOST:PORT/DB URL, got {redact_url(text)!r}") from None
    if (parts.scheme not in ("postgresql", "postgres") or not text.startswith(parts.scheme + "://")
            or not (parts.netloc or parts.path.strip("/")) or any(c.isspace() for c in text)):
        raise ValueError(f"must be a postgresql://USER@HOST:PORT/DB URL, got {redact_url(text)!r}")
    return text


MAX_REUSE_GRACE = 300.0


def reuse_grace(value: Any) -> float:
    """``[oauth] refresh_reuse_grace``: a replay inside it passes as a retry, so it stays short."""
    seconds = duration()(value)
    if seconds > MAX_REUSE_GRACE:
        raise ValueError("must be at most 5m: a replayed refresh token inside the grace is not detected")
    return seconds


def network(value: Any) -> str:
    """A CIDR block like ``10.0.0.0/8`` or ``::1/128`` (an address alone is a
    block of one), normalised (``192.0.2.7`` becomes ``192.0.2.7/32``)."""
    try:
        return str(ipaddress.ip_network(string(value)))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block like 10.0.0.0/8 or ::1/128 ({exc})") from None


def _server_fields(base: Path) -> dict[str, Converter]:
    return {
        "http": address,
        "https": address,
        "tls_cert": file_path(base),
        "tls_key": file_path(base),
        "state_dir": file_path(base),
        "public_url": public_url,
        "shutdown_grace": duration(),
        "watch": boolean,
        "max_header_bytes": integer(1024),
        "max_body_bytes": integer(1),
        "header_timeout": duration(positive=True),
        "keepalive_timeout": duration(positive=True),
        "handshake_timeout": duration(positive=True),
        "max_connections": integer(1),
        "max_connections_per_ip": integer(1),
        "log_level": choice(*LOG_LEVELS),
        "log_format": choice("text", "json"),
        # HTTPS
        "hsts_max_age": duration(),
        "tls_termination_from": array(network),
    }


def _oauth_fields(base: Path) -> dict[str, Converter]:
    return {
        "apps": file_path(base),
        "users": file_path(base),
        "providers": file_path(base),
        "access_token_ttl": duration(positive=True),
        "refresh_token_ttl": duration(positive=True),
        "code_ttl": duration(positive=True),
        "signing_alg": choice(*SIGNING_ALGS),
        "leeway": duration(),
        "audience": nonempty,
        "login_rate": rate,
        # refresh-token families
        "refresh_reuse_grace": reuse_grace,
        "refresh_reuse_count": integer(1, 100),
        "refresh_family_ttl": duration(positive=True),
        "min_password_length": password_length,
        # brute force and unauthenticated argon2 work
        "login_user_rate": rate,
        "client_auth_rate": rate,
        "hash_queue": integer(0),
        # the browser login session's lifetime.
        "session_ttl": duration(positive=True),
        # Device grant (RFC 8628 §5.1): wrong user codes per address.
        "user_code_rate": rate,
    }


WEBSOCKET_FIELDS: dict[str, Converter] = {
    "path": url_path,
    "expiry_warning": duration(),
    "token_in_query": boolean,
    "max_message_bytes": integer(1),
    "ping_interval": duration(),  # 0: no server pings
    "pong_timeout": duration(positive=True),
    "echo_path": url_path,
    "max_backlog_bytes": integer(1),
    "allowed_origins": array(origin),
    "publish_rate": rate,
    "max_subscriptions": integer(1),
    "max_channel_name": integer(1),
    "max_presence_members": integer(1),
    "message_rate": rate,
    "join_leave_debounce": duration(),
    "max_history_bytes": integer(0),
    "max_idle_channels": integer(0),
}
CHANNEL_FIELDS: dict[str, Converter] = {
    "pattern": nonempty,
    "subscribe_scope": scope,
    "publish_scope": scope,
    "history": integer(0, 1_000_000),
    "presence": boolean,
    "join_leave": boolean,
    "history_bytes": integer(0),
}
BROKER_FIELDS: dict[str, Converter] = {"url": broker_url, "node_ttl": duration(positive=True)}


def _store_fields(base: Path) -> dict[str, Converter]:
    return {"url": store_url, "key_file": file_path(base),
            # The pool and the revocation poll of a node on PostgreSQL.
            "pool_size": integer(1, 100), "revocation_poll": duration()}

DEMO_FIELDS: dict[str, Converter] = {"enabled": boolean}
API_FIELDS: dict[str, Converter] = {
    "publish_rate": rate,
    # How long an /api/publish idempotency_key is remembered.
    "idempotency_window": duration(positive=True),
}
METRICS_FIELDS: dict[str, Converter] = {"scope": scope}
TOP_LEVEL = ("server", "oauth", "websocket", "channel", "broker", "store", "demo", "api", "metrics",
             "webhook", "admin")
# [admin]: the console at /admin/ (on or off; the app it signs in as).
ADMIN_FIELDS: dict[str, Converter] = {"enabled": boolean, "client_id": nonempty}


def load_settings(
    path: Path,
    *,
    http: str | None = None,
    https: str | None = None,
    state_dir: Path | None = None,
) -> Settings:
    """The complete snapshot described by the config file at ``path``.

    Args:
        path: ``realtime.toml``; the apps and users files it names are read too.
        http, https: ``--http``/``--https`` overrides (``''``: listener off).
        state_dir: ``--state-dir`` override, relative to the working directory.

    Raises:
        ConfigError: listing every problem in every file read.
    """
    issues: list[ConfigIssue] = []
    read = _read(Path(path), issues)
    if read is None:
        raise ConfigError(issues)
    settings = overrides_into(read[0], issues, http, https, state_dir, read[1])
    if issues:
        raise ConfigError(_in_file_order(issues))
    return settings


def _in_file_order(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """Group by file (in the order first met), then by line: how an operator fixes them."""
    order: dict[Path, int] = {}
    for issue in issues:
        order.setdefault(issue.file, len(order))
    return sorted(issues, key=lambda issue: (order[issue.file], issue.line or 0))


def check(path: Path) -> list[ConfigIssue]:
    """Every problem in the config at ``path`` and the files it names ([] if valid)."""
    try:
        load_settings(path)
    except ConfigError as exc:
        return exc.issues
    return []


def load_key_settings(path: Path, apps_file: Path) -> Settings:
    """``realtime key rotate``: the part of the snapshot the signing keys
    depend on (``[oauth]`` and the apps in ``apps_file``), whose
    :attr:`Settings.key_retire_after` is the server's window.

    Reads only that, so a problem elsewhere (a users
    file not created yet, an app's bad redirect URI) does not block a key
    rotation; ``[oauth]`` defaults are the snapshot's own.

    Raises:
        ConfigError: the config unreadable, or a bad ``access_token_ttl``
            or ``leeway`` (in ``[oauth]`` or an app), a bad ``signing_alg``, or
            an unreadable apps file.
    """
    issues: list[ConfigIssue] = []
    parsed = parse_toml(Path(path), issues)
    if parsed is None:
        raise ConfigError(issues)
    data, source = parsed
    oauth = _section(source, data, "oauth", _oauth_fields(Path(path).parent), OAuthSettings)
    apps: dict[str, App] = {}
    if apps_file.is_file():
        apps = read_apps(apps_file, issues)
    # [store]: with a url the ring is in the database, not in state_dir/keys.
    store = _section(source, data, "store", _store_fields(Path(path).parent), StoreSettings)
    relevant = [i for i in issues if i.key is None
                or i.key.endswith(("access_token_ttl", "leeway", "signing_alg", "store.url", "store.key_file"))]
    if relevant:
        raise ConfigError(relevant)
    return Settings(oauth=oauth, apps=apps, store=store, config_path=Path(path))


def _read(path: Path, issues: list[ConfigIssue]) -> tuple[Settings, Source] | None:
    parsed = parse_toml(path, issues)
    if parsed is None:
        return None
    data, source = parsed
    base = path.parent
    for key in data:
        if key not in TOP_LEVEL:
            source.error((key,), unknown_key(key, TOP_LEVEL))
    server = _section(source, data, "server", _server_fields(base), ServerSettings)
    oauth = _section(source, data, "oauth", _oauth_fields(base), OAuthSettings)
    websocket = _section(source, data, "websocket", WEBSOCKET_FIELDS, WebSocketSettings)
    broker = _section(source, data, "broker", BROKER_FIELDS, BrokerSettings)
    store = _section(source, data, "store", _store_fields(base), StoreSettings)
    if store.url is not None and store.key_file is None and "store" in data:
        source.error(("store", "url"), "needs [store] key_file too: the same 32-byte file on every node"
                     " (realtime store migrate writes it)")
    demo = _section(source, data, "demo", DEMO_FIELDS, DemoSettings)
    api = _section(source, data, "api", API_FIELDS, ApiSettings)
    metrics = _section(source, data, "metrics", METRICS_FIELDS, MetricsSettings)
    server = check_tls(source, server)
    if websocket.echo_path is not None and websocket.echo_path == websocket.path:
        source.error(("websocket", "echo_path"), "must differ from websocket.path")
    sources = [path]
    apps, users, providers, provider_files = {}, {}, {}, []
    if oauth.providers is not None and not oauth.providers.is_dir():
        source.error(("oauth", "providers"), f"directory not found: {oauth.providers}")
    elif oauth.providers is not None:
        providers, provider_files = read_providers(oauth.providers, issues)
        provider_files = [oauth.providers, *provider_files]  # the directory: a file added or removed
        if oauth.users is None and any(p.auto_create for p in providers.values()):
            source.error(("oauth", "users"), "a provider with auto_create = true needs a users file to add users to")
    if oauth.apps is not None and _exists(source, ("oauth", "apps"), oauth.apps):
        apps = read_apps(oauth.apps, issues)
        sources.append(oauth.apps)
    if oauth.users is not None and _exists(source, ("oauth", "users"), oauth.users):
        users = read_users(oauth.users, issues, providers=frozenset(providers), client_ids=apps)
        sources.append(oauth.users)
    sources += provider_files
    for warning in readable_secrets_warnings(oauth.apps, apps, oauth.users, users):
        log.warning("%s", warning)  # `check`, and `serve` at start and on each reload
    settings = Settings(
        server=server,
        oauth=oauth,
        websocket=websocket,
        channels=_channels(source, data.get("channel", [])),
        broker=broker,
        store=store,
        demo=demo,
        apps=apps,
        users=users,
        providers=providers,
        config_path=path,
        sources=tuple(sources),
        api=api,
        metrics=metrics,
        webhooks=read_webhooks(source, data.get("webhook", []), base),
        admin=_section(source, data, "admin", ADMIN_FIELDS, AdminSettings),
    )
    return settings, source


def _section(source: Source, data: dict[str, Any], name: str, fields: dict[str, Converter], cls: type) -> Any:
    if name not in data:
        return cls()
    got = read_table(source, data[name], (name,), fields)
    return cls(**(got or {}))


def _exists(source: Source, key: tuple[str, str], file: Path) -> bool:
    if file.is_file():
        return True
    what = "is not a file" if file.exists() else "file not found"
    source.error(key, f"{what}: {file}")
    return False


def _channels(source: Source, tables: Any) -> tuple[ChannelRule, ...]:
    if not isinstance(tables, list):
        source.error(("channel",), f"expected [[channel]] tables, got {type_name(tables)}")
        return ()
    rules: list[ChannelRule] = []
    first: dict[str, int | None] = {}
    for n, table in enumerate(tables):
        path = ("channel", n)
        fields = read_table(source, table, path, CHANNEL_FIELDS, required=("pattern",))
        if not fields or "pattern" not in fields:
            continue
        pattern, line = fields["pattern"], source.line(path + ("pattern",))
        if pattern in first:
            source.error(path + ("pattern",), f"duplicate pattern {pattern!r} (lines {first[pattern]} and {line})")
            continue
        first[pattern] = line
        rules.append(ChannelRule(**fields))
    return tuple(rules)

