"""Provider definition files: loading, validation, secrets, users, and the
pure request/answer rules of :mod:`realtime.config.login_provider`."""

from __future__ import annotations

import base64
import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from realtime.cli.main import build_parser
from realtime.config.load import ConfigError, load_settings
from realtime.config.users import load_users
from realtime.config.login_provider import Provider, ProviderError, allowed_url, parse_token_response

EXAMPLE = Path("/work/shared/provider-example.json")
CONFIG = """
[server]
http = "127.0.0.1:0"
https = ""
state_dir = "var"
public_url = "https://chat.example"

[oauth]
apps = "apps.toml"
users = "users.json"
providers = "providers"
"""
EXAMPLE_PROFILE: dict[str, Any] = {
    "name": "corp", "display_name": "Corp account", "oauth_version": "2.0",
    "host": "sso.example.com", "authorize_path": "/oauth2/authorize", "token_path": "/oauth2/token",
    "resource_host": "sso.example.com", "oauth2_scope": "openid profile email",
    "oauth2_bearer": "{AccessToken}", "getProfileInfo": "/oauth2/userinfo", "ProfileIdVariable": "sub",
    "TokenExpiresVariable": "expires_in", "TemplateDisplayName": "{display_name}",
    "accessFromRefreshTokenUrl": "https://sso.example.com/oauth2/token", "client_id": "realtime-login",
    "client_secret_env": "CORP_CLIENT_SECRET", "default_scopes": ["chat:read", "chat:write"],
    "auto_create": True,
}


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "providers").mkdir()
    (tmp_path / "realtime.toml").write_text(CONFIG)
    (tmp_path / "apps.toml").write_text("")
    (tmp_path / "users.json").write_text('{"users": []}')
    monkeypatch.setenv("CORP_CLIENT_SECRET", "s3cret-from-env")
    return tmp_path / "realtime.toml"


def write(conf: Path, stem: str, profile: dict[str, Any] | str, /, **changes: Any) -> Path:
    path = conf.parent / "providers" / f"{stem}.json"
    if isinstance(profile, str):
        path.write_text(profile)
    else:
        body = dict(profile, **changes)
        path.write_text(json.dumps({"profile": {k: v for k, v in body.items() if v is not None}}, indent=2))
    return path


def issues(conf: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(conf)
    return [str(i) for i in info.value.issues]


def test_the_shared_example_loads(conf: Path) -> None:
    if EXAMPLE.exists():
        shutil.copy(EXAMPLE, conf.parent / "providers" / "corp.json")
    else:  # pragma: no cover - outside the project workspace
        write(conf, "corp", EXAMPLE_PROFILE)
    settings = load_settings(conf)
    corp = settings.providers["corp"]
    assert corp.display_name == "Corp account" and corp.client_id == "realtime-login"
    assert corp.authorize_url == "https://sso.example.com/oauth2/authorize"
    assert corp.token_url == "https://sso.example.com/oauth2/token"
    assert corp.profile_url == "https://sso.example.com/oauth2/userinfo"
    assert corp.client_secret == "s3cret-from-env" and "s3cret" not in repr(corp)
    assert corp.default_scopes == ("chat:read", "chat:write") and corp.auto_create
    assert corp.token_auth == "client_secret_basic" and corp.pkce and corp.timeout == 10.0
    # Reload and watch cover the directory (a file added or removed) and each file.
    assert conf.parent / "providers" in settings.sources
    assert conf.parent / "providers" / "corp.json" in settings.sources


def test_hosts_bare_with_port_or_full_url(conf: Path) -> None:
    write(conf, "corp", EXAMPLE_PROFILE, host="sso.example.com:8443", resource_host="http://127.0.0.1:9000/api/")
    corp = load_settings(conf).providers["corp"]
    assert corp.authorize_url == "https://sso.example.com:8443/oauth2/authorize"
    assert corp.profile_url == "http://127.0.0.1:9000/api/oauth2/userinfo"


@pytest.mark.parametrize(("changes", "key", "message"), [
    ({"host": "http://sso.example.com"}, "profile.host", "http is allowed only for localhost"),
    ({"host": "sso.example.com/sub"}, "profile.host", "a bare host has no path"),
    ({"host": "ftp://sso.example.com"}, "profile.host", "must be a host or an http(s) URL"),
    ({"oauth_version": "1.0a"}, "profile.oauth_version", 'only "2.0"'),
    ({"authorize_path": "oauth2/authorize"}, "profile.authorize_path", "starting with '/'"),
    ({"oauth2_bearer": "Bearer"}, "profile.oauth2_bearer", "{AccessToken}"),
    ({"default_scopes": ["chat read"]}, "profile.default_scopes", "is not a scope"),
    ({"auto_create": "yes"}, "profile.auto_create", "expected true or false"),
    ({"name": "Corp Login"}, "profile.name", "not a provider name"),
    ({"client_id": None}, "profile.client_id", "missing required key"),
    ({"ProfileIdVarible": "id"}, "profile.ProfileIdVarible", "did you mean 'ProfileIdVariable'"),
    ({"client_secret_env": "NOT_SET_ANYWHERE"}, "profile.client_secret_env", "NOT_SET_ANYWHERE is not set"),
    ({"client_secret_env": None}, "profile.client_secret_env", "missing"),
    ({"client_secret": "in-the-file"}, "profile.client_secret", "must not be in the definition"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "profile.token_endpoint_auth_method", "must be one of"),
])
def test_errors_name_file_line_and_key(conf: Path, changes: dict[str, Any], key: str, message: str) -> None:
    path = write(conf, "corp", EXAMPLE_PROFILE, **changes)
    found = issues(conf)
    assert any(i.startswith(f"{path}:") and f": {key}: " in i and message in i for i in found), found
    assert not any("in-the-file" in i for i in found)


def test_syntax_error_duplicate_names_and_top_level(conf: Path) -> None:
    broken = write(conf, "a-broken", '{"profile": {"name": "x",}}')
    first = write(conf, "b-first", EXAMPLE_PROFILE)
    second = write(conf, "c-second", EXAMPLE_PROFILE)
    extra = write(conf, "d-extra", json.dumps({"profile": dict(EXAMPLE_PROFILE, name="other"), "x": 1}))
    found = issues(conf)
    assert any(i.startswith(f"{broken}:1: JSON syntax error") for i in found), found
    assert any(i.startswith(f"{second}: profile.name: provider 'corp' is defined already in {first}")
               for i in found), found
    assert any(i.startswith(f"{extra}:1: x: unknown key") for i in found), found


def test_missing_directory(conf: Path) -> None:
    shutil.rmtree(conf.parent / "providers")
    assert any("oauth.providers: directory not found" in i for i in issues(conf))


def test_secret_from_a_file(conf: Path) -> None:
    (conf.parent / "corp.secret").write_text("file-secret\n")
    write(conf, "corp", EXAMPLE_PROFILE, client_secret_env=None, client_secret_file="../corp.secret")
    settings = load_settings(conf)
    assert settings.providers["corp"].client_secret == "file-secret"
    assert conf.parent / "providers" / ".." / "corp.secret" in settings.sources  # rotation reloads
    (conf.parent / "corp.secret").unlink()
    assert any("profile.client_secret_file: file not found" in i for i in issues(conf))


def test_auto_create_needs_a_users_file(conf: Path) -> None:
    conf.write_text(CONFIG.replace('users = "users.json"\n', ""))
    write(conf, "corp", EXAMPLE_PROFILE)
    assert any("oauth.users: a provider with auto_create = true needs a users file" in i for i in issues(conf))


def test_provider_users_in_the_users_file(conf: Path) -> None:
    write(conf, "corp", EXAMPLE_PROFILE)
    users = conf.parent / "users.json"
    users.write_text(json.dumps({"users": [{"name": "corp:1234", "scopes": ["chat:read"]}]}))
    assert load_settings(conf).users["corp:1234"].scopes == ("chat:read",)
    # ':' stays reserved: a prefix that is no provider is refused, naming the key.
    users.write_text(json.dumps({"users": [{"name": "alice"}, {"name": "other:1"}]}))
    found = issues(conf)
    assert any(i.startswith(f"{users}:1: users[2].name: 'other:1'") and "not a provider (corp)" in i
               for i in found), found
    # Without providers nothing with ':' loads.
    with pytest.raises(ConfigError):
        load_users(users)


def test_user_add_links_a_provider_user_without_a_password(conf: Path, capsys: Any) -> None:
    write(conf, "corp", EXAMPLE_PROFILE)
    args = build_parser().parse_args(["user", "add", "corp:1234", "--scope", "chat:read", "-c", str(conf)])
    assert args.func(args) == 0
    stored = json.loads((conf.parent / "users.json").read_text())["users"]
    assert stored == [{"name": "corp:1234", "scopes": ["chat:read"]}]
    args = build_parser().parse_args(["user", "add", "nope:1", "--password-stdin", "-c", str(conf)])
    sys_stdin = sys.stdin
    try:
        sys.stdin = io.StringIO("pw-long-enough-1\n")
        assert args.func(args) == 1
    finally:
        sys.stdin = sys_stdin
    assert "not a provider" in capsys.readouterr().err


# -- pure rules -------------------------------------------------------------------


def provider(**kw: Any) -> Provider:
    base = dict(name="corp", display_name="Corp", base_url="https://sso.example.com",
                resource_url="https://api.example.com", authorize_path="/authorize", token_path="/token",
                profile_path="/me", profile_id="sub", client_id="id:with space", client_secret="se:cret&")
    return Provider(**{**base, **kw})


def test_authorization_request_carries_state_pkce_and_exact_redirect() -> None:
    url = provider(scope="openid profile").authorization_request(
        redirect_uri="https://chat.example/oauth2/callback/corp", state="st", challenge="ch")
    assert url == ("https://sso.example.com/authorize?response_type=code&client_id=id%3Awith+space"
                   "&redirect_uri=https%3A%2F%2Fchat.example%2Foauth2%2Fcallback%2Fcorp&state=st"
                   "&scope=openid+profile&code_challenge=ch&code_challenge_method=S256")
    assert "code_challenge" not in provider().authorization_request(redirect_uri="r", state="s", challenge=None)


def test_token_request_client_authentication() -> None:
    form, headers = provider().token_request(code="c", redirect_uri="r", verifier="v")
    assert form == {"grant_type": "authorization_code", "code": "c", "redirect_uri": "r", "code_verifier": "v"}
    # RFC 6749 §2.3.1: each part form-urlencoded before Basic.
    assert base64.b64decode(headers["authorization"].removeprefix("Basic ")) == b"id%3Awith%20space:se%3Acret%26"
    form, headers = provider(token_auth="client_secret_post").token_request(code="c", redirect_uri="r", verifier=None)
    assert form["client_id"] == "id:with space" and form["client_secret"] == "se:cret&"
    assert "authorization" not in headers and "code_verifier" not in form
    form, _ = provider(token_auth="none", client_secret=None).token_request(code="c", redirect_uri="r", verifier="v")
    assert form["client_id"] == "id:with space" and "client_secret" not in form


def test_bearer_template_profile_id_and_display_name() -> None:
    assert provider().authorization_header("tok") == "Bearer tok"
    assert provider(bearer="token {AccessToken}").authorization_header("tok") == "token tok"
    nested = provider(profile_id="data.id", display_template="{data.first} {data.last}")
    profile = {"data": {"id": 42, "first": "Ada", "last": "L."}}
    assert nested.read_profile_id(profile) == "42" and nested.sub_for("42") == "corp:42"
    assert nested.read_display_name(profile) == "Ada L."
    assert nested.read_display_name({"data": {"id": 1}}) is None
    for bad in ({}, {"sub": True}, {"sub": ""}, {"sub": " x"}, {"sub": {"a": 1}}, {"sub": "x" * 201}):
        with pytest.raises(ProviderError):
            provider().read_profile_id(bad)


def test_token_answers() -> None:
    assert parse_token_response(200, "application/json", b'{"access_token":"a","token_type":"bearer"}')[0] == "a"
    assert parse_token_response(200, "application/x-www-form-urlencoded", b"access_token=b&scope=x")[0] == "b"
    with pytest.raises(ProviderError, match="error=invalid_grant"):
        parse_token_response(400, "application/json", b'{"error":"invalid_grant","error_description":"code xyz"}')
    with pytest.raises(ProviderError, match="error=\\(unprintable\\)"):
        parse_token_response(400, "application/json", b'{"error":"<script>"}')
    with pytest.raises(ProviderError, match="not Bearer"):
        parse_token_response(200, "application/json", b'{"access_token":"a","token_type":"mac"}')
    with pytest.raises(ProviderError, match="without a JSON object"):
        parse_token_response(502, "text/html", b"<html>")


def test_only_https_or_loopback_http_is_contacted() -> None:
    assert allowed_url("https://sso.example.com/token")
    assert allowed_url("http://127.0.0.1:9000/token") and allowed_url("http://[::1]:9000/token")
    assert not allowed_url("http://sso.example.com/token")
    assert not allowed_url("file:///etc/passwd")
