"""The login provider definitions: ``[oauth] providers = "providers/"``.

Every ``*.json`` file in that directory is one provider, shaped as
``provider-example.json``::

    {"profile": {"name": "corp", "oauth_version": "2.0", "host": "sso.example.com", ...}}

Each key is checked here, and problems name the file, line and key like
every other config file.  The client secret never sits in the file: it is
read from the environment variable named by ``client_secret_env`` or the
file named by ``client_secret_file`` (relative to the definition's
directory), at load time, so ``realtime check`` reports a missing one.
"""

from __future__ import annotations

import json
import os
import string as string_module
import urllib.parse
from pathlib import Path
from typing import Any

from realtime.config.fields import (
    ConfigIssue,
    Converter,
    Source,
    array,
    boolean,
    choice,
    duration,
    nonempty,
    parse_json,
    read_table,
    scope,
    string,
    type_name,
    unknown_key,
)
from realtime.config.login_provider import LOOPBACK, NAME_RE, TOKEN_AUTH_METHODS, Provider

#: A secret file larger than this is surely the wrong file.
MAX_SECRET_BYTES = 4096


def provider_name(value: Any) -> str:
    if not NAME_RE.fullmatch(string(value)):
        raise ValueError(f"{value!r} is not a provider name (a-z, 0-9, '-', '_'; at most 32; starts with a letter or digit)")
    return value


def base_url(value: Any) -> str:
    """A bare host (``sso.example.com[:port]``, https assumed) or a URL with
    its scheme (``http://127.0.0.1:9000``); http only for loopback."""
    text = string(value).strip()
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(f"{value!r} is not a host or URL")
    if "://" not in text:
        if any(c in text for c in "/?#@"):
            raise ValueError(f"{value!r}: a bare host has no path; write a full URL like https://{text}")
        text = "https://" + text
    parts = urllib.parse.urlsplit(text)
    try:
        parts.port
    except ValueError:
        raise ValueError(f"{value!r} has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} must be a host or an http(s) URL")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"{value!r} must not have a query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{value!r} must not contain a user name or password")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise ValueError(f"{value!r}: http is allowed only for localhost, 127.0.0.1 and [::1]; use https")
    return text.rstrip("/")


def path(value: Any) -> str:
    if not string(value).startswith("/") or any(c.isspace() or c == "#" for c in value):
        raise ValueError(f"must be a path starting with '/', got {value!r}")
    return value


def path_or_url(value: Any) -> str:
    if isinstance(value, str) and "://" in value:
        return absolute_url(value)
    return path(value)


def absolute_url(value: Any) -> str:
    if "://" not in string(value):
        raise ValueError(f"must be a full URL with its scheme, got {value!r}")
    base_url(value)
    return value


def oauth_version(value: Any) -> str:
    if string(value) != "2.0":
        raise ValueError(f"only \"2.0\" is supported for login providers, got {value!r}")
    return value


def bearer_template(value: Any) -> str:
    if "{AccessToken}" not in string(value) or any(c in value for c in "\r\n"):
        raise ValueError(f"must contain {{AccessToken}}, got {value!r}")
    return value


def env_name(value: Any) -> str:
    if not string(value) or "=" in value or "\0" in value:
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


def _template(value: Any) -> str:
    try:
        list(string_module.Formatter().parse(string(value)))
    except ValueError as exc:
        raise ValueError(f"bad template {value!r}: {exc}") from None
    return value


def _fields(base: Path) -> dict[str, Converter]:
    return {
        "name": provider_name,
        "display_name": nonempty,
        "oauth_version": oauth_version,
        "host": base_url,
        "authorize_path": path,
        "token_path": path,
        "resource_host": base_url,
        "oauth2_scope": string,
        "oauth2_bearer": bearer_template,
        "getProfileInfo": path_or_url,
        "ProfileIdVariable": nonempty,
        "TokenExpiresVariable": nonempty,
        "TemplateDisplayName": _template,
        "accessFromRefreshTokenUrl": absolute_url,
        "client_id": nonempty,
        "client_secret_env": env_name,
        "client_secret_file": lambda v: base / Path(nonempty(v)).expanduser(),
        "token_endpoint_auth_method": choice(*TOKEN_AUTH_METHODS),
        "pkce": boolean,
        "timeout": duration(positive=True),
        "default_scopes": array(scope),
        "auto_create": boolean,
    }


REQUIRED = ("name", "oauth_version", "host", "authorize_path", "token_path",
            "getProfileInfo", "ProfileIdVariable", "client_id")


def read_providers(directory: Path, issues: list[ConfigIssue]) -> tuple[dict[str, Provider], list[Path]]:
    """Every ``*.json`` in ``directory``: the good providers by name, and the
    files read (definitions and secret files) for ``Settings.sources``."""
    providers: dict[str, Provider] = {}
    files: list[Path] = []
    first: dict[str, Path] = {}
    try:
        entries = sorted(p for p in directory.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except OSError as exc:
        issues.append(ConfigIssue(directory, None, None, f"cannot list the directory: {exc.strerror or exc}"))
        return {}, []
    for file in entries:
        files.append(file)
        provider, secret_file = _read_one(file, issues)
        if secret_file is not None:
            files.append(secret_file)
        if provider is None:
            continue
        if provider.name in providers:
            issues.append(ConfigIssue(file, None, "profile.name",
                                      f"provider {provider.name!r} is defined already in {first[provider.name]}"))
            continue
        providers[provider.name] = provider
        first[provider.name] = file
    return providers, files


def _read_one(file: Path, issues: list[ConfigIssue]) -> tuple[Provider | None, Path | None]:
    parsed = parse_json(file, issues)
    if parsed is None:
        return None, None
    data, source = parsed
    if not isinstance(data, dict):
        source.whole_file(f'expected {{"profile": {{...}}}}, got {type_name(data)}', 1)
        return None, None
    for key in data:
        if key != "profile":
            source.error((key,), unknown_key(key, ["profile"]))
    if "profile" not in data:
        source.whole_file('missing the "profile" object', 1)
        return None, None
    before = len(issues)
    profile = data["profile"]
    if isinstance(profile, dict) and "client_secret" in profile:
        # A secret in a config file ends up in backups and repositories.
        source.error(("profile", "client_secret"), "the secret must not be in the definition: "
                     "put it in an environment variable (client_secret_env) or a file (client_secret_file)")
        profile = {k: v for k, v in profile.items() if k != "client_secret"}
    fields = read_table(source, profile, ("profile",), _fields(file.parent), required=REQUIRED)
    if fields is None:
        return None, None
    secret, secret_file = _secret(source, fields)
    if len(issues) > before:
        return None, secret_file
    base = fields["host"]
    return Provider(
        name=fields["name"],
        display_name=fields.get("display_name", fields["name"]),
        base_url=base,
        resource_url=fields.get("resource_host", base),
        authorize_path=fields["authorize_path"],
        token_path=fields["token_path"],
        profile_path=fields["getProfileInfo"],
        profile_id=fields["ProfileIdVariable"],
        client_id=fields["client_id"],
        client_secret=secret,
        scope=fields.get("oauth2_scope", ""),
        bearer=fields.get("oauth2_bearer", "{AccessToken}"),
        token_expires=fields.get("TokenExpiresVariable"),
        display_template=fields.get("TemplateDisplayName"),
        refresh_url=fields.get("accessFromRefreshTokenUrl"),
        default_scopes=tuple(dict.fromkeys(fields.get("default_scopes", ()))),
        auto_create=fields.get("auto_create", False),
        token_auth=fields.get("token_endpoint_auth_method", "client_secret_basic"),
        pkce=fields.get("pkce", True),
        timeout=fields.get("timeout", 10.0),
        source=str(file),
    ), secret_file


def _secret(source: Source, fields: dict[str, Any]) -> tuple[str | None, Path | None]:
    """The client secret from the environment or a file; never from the definition."""
    env, secret_file = fields.get("client_secret_env"), fields.get("client_secret_file")
    method = fields.get("token_endpoint_auth_method", "client_secret_basic")
    key = ("profile", "client_secret_env")
    if env is not None and secret_file is not None:
        source.error(key, "give client_secret_env or client_secret_file, not both")
        return None, secret_file
    if method == "none":
        if env is not None or secret_file is not None:
            source.error(key, 'a secret is not used with token_endpoint_auth_method = "none"')
        return None, None
    if env is not None:
        value = os.environ.get(env)
        if not value:
            source.error(key, f"the environment variable {env} is not set (it holds the client secret)")
            return None, None
        return value, None
    if secret_file is not None:
        fkey = ("profile", "client_secret_file")
        try:
            raw = secret_file.read_bytes()
        except FileNotFoundError:
            source.error(fkey, f"file not found: {secret_file}")
            return None, secret_file
        except OSError as exc:
            source.error(fkey, f"cannot read {secret_file}: {exc.strerror or exc}")
            return None, secret_file
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            value = ""
        if not value or len(raw) > MAX_SECRET_BYTES or not value.isprintable():
            source.error(fkey, f"{secret_file} must hold the client secret as one line of text")
            return None, secret_file
        return value, secret_file
    source.error(key, "missing: name the environment variable (client_secret_env) or file "
                      '(client_secret_file) that holds the secret, or set token_endpoint_auth_method = "none"')
    return None, None


def provider_names(directory: Path) -> frozenset[str]:
    """The ``name`` of each definition in ``directory``, without the full
    checks (``realtime user add corp:ID`` runs without the secret at hand)."""
    names = set()
    try:
        files = [p for p in directory.iterdir() if p.suffix == ".json" and not p.name.startswith(".")]
    except OSError:
        return frozenset()
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        name = data.get("profile", {}).get("name") if isinstance(data, dict) else None
        if isinstance(name, str) and NAME_RE.fullmatch(name):
            names.add(name)
    return frozenset(names)
