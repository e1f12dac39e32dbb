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

This module reads the files and puts the snapshot together, with the
checks that span sections or files; what each table may hold is in
:mod:`realtime.config.sections`, and the TLS certificate and key check in
:mod:`realtime.config.tls_files`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from realtime.config.apps import load_apps, read_apps, readable_secrets_warnings
from realtime.config.users import load_users, read_users
from realtime.config.providers import read_providers
from realtime.config.webhooks import read_webhooks
from realtime.config.fields import ConfigError, ConfigIssue, Source, parse_toml, unknown_key
from realtime.config.sections import (
    ADMIN_FIELDS,
    API_FIELDS,
    BROKER_FIELDS,
    DEMO_FIELDS,
    METRICS_FIELDS,
    TOP_LEVEL,
    WEBSOCKET_FIELDS,
    oauth_fields,
    read_channels,
    read_section,
    server_fields,
    store_fields,
)
from realtime.config.settings import (
    AdminSettings,
    ApiSettings,
    MetricsSettings,
    App,
    BrokerSettings,
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

log = logging.getLogger("realtime.config")


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
    oauth = read_section(source, data, "oauth", oauth_fields(Path(path).parent), OAuthSettings)
    apps: dict[str, App] = {}
    if apps_file.is_file():
        apps = read_apps(apps_file, issues)
    # [store]: with a url the ring is in the database, not in state_dir/keys.
    store = read_section(source, data, "store", store_fields(Path(path).parent), StoreSettings)
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
    server = read_section(source, data, "server", server_fields(base), ServerSettings)
    oauth = read_section(source, data, "oauth", oauth_fields(base), OAuthSettings)
    websocket = read_section(source, data, "websocket", WEBSOCKET_FIELDS, WebSocketSettings)
    broker = read_section(source, data, "broker", BROKER_FIELDS, BrokerSettings)
    store = read_section(source, data, "store", store_fields(base), StoreSettings)
    if store.url is not None and store.key_file is None and "store" in data:
        source.error(("store", "url"), "needs [store] key_file too: the same 32-byte file on every node"
                     " (realtime store migrate writes it)")
    demo = read_section(source, data, "demo", DEMO_FIELDS, DemoSettings)
    api = read_section(source, data, "api", API_FIELDS, ApiSettings)
    metrics = read_section(source, data, "metrics", METRICS_FIELDS, MetricsSettings)
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
        channels=read_channels(source, data.get("channel", [])),
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
        admin=read_section(source, data, "admin", ADMIN_FIELDS, AdminSettings),
    )
    return settings, source


def _exists(source: Source, key: tuple[str, str], file: Path) -> bool:
    if file.is_file():
        return True
    what = "is not a file" if file.exists() else "file not found"
    source.error(key, f"{what}: {file}")
    return False

