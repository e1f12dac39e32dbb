"""The config layer: files into frozen snapshots, and every error with file, line and key."""

from __future__ import annotations

import datetime
import shutil
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from realtime.config.load import (
    ConfigError,
    ConfigIssue,
    apply_overrides,
    check,
    default_settings,
    load_apps,
    load_settings,
    load_users,
)
from realtime.config.locate import index_json, index_toml
from realtime.config.settings import (
    Addr,
    App,
    BrokerSettings,
    StoreSettings,
    ChannelRule,
    OAuthSettings,
    RetiredSecret,
    ServerSettings,
    Settings,
    User,
    WebSocketSettings,
)
from realtime.config.units import format_duration

ROOT = Path(__file__).resolve().parents[2]
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


def write(path: Path, text: str) -> Path:
    """Write dedented ``text``; a leading newline is dropped so line 1 is the first written line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).removeprefix("\n"), encoding="utf-8")
    return path


def issues_of(path: Path, **kw: Any) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, **kw)
    assert info.value.issues
    assert str(info.value) == "\n".join(str(i) for i in info.value.issues)
    return info.value.issues


def only_issue(path: Path, **kw: Any) -> ConfigIssue:
    issues = issues_of(path, **kw)
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pem(tmp_path: Path, ca: trustme.CA) -> Path:
    """A cert and its key in one PEM file."""
    path = tmp_path / "tls" / "server.pem"
    path.parent.mkdir()
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(path))
    return path


# -- the shipped examples ---------------------------------------------------


def test_example_conf_loads_from_a_copy(tmp_path: Path, ca: trustme.CA) -> None:
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "sgc.pem.example"))
    settings = load_settings(tmp_path / "conf" / "realtime.toml")
    conf = tmp_path / "conf"
    assert settings.server.http == Addr("127.0.0.1", 8080)
    assert settings.server.https == Addr("127.0.0.1", 8443)
    assert settings.server.tls_cert == settings.server.tls_key == conf / "../sgc.pem.example"
    assert settings.server.state_dir == conf / "../var"
    assert settings.server.public_url == "https://localhost:8443"
    assert settings.oauth.access_token_ttl == 900 and settings.oauth.refresh_token_ttl == 30 * 86400
    assert settings.websocket.path == "/ws" and settings.websocket.token_in_query is False
    assert [c.pattern for c in settings.channels] == ["chat:*", "news:*", "user:*"]
    assert settings.demo.enabled is True
    demo = settings.apps["demo"]
    assert demo.public and demo.client_secret_hash is None
    assert demo.redirect_uris == ("https://localhost:8443/demo/callback", "http://127.0.0.1:8080/demo/callback")
    assert demo.grant_types == ("authorization_code", "refresh_token")
    assert demo.scopes == ("chat:read", "chat:write", "offline_access")
    assert settings.users == {}
    assert settings.config_path == conf / "realtime.toml"
    assert settings.sources == (conf / "realtime.toml", conf / "apps.toml", conf / "users.json")


def test_example_conf_loads_in_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    if not (ROOT / "sgc.pem.example").exists():
        pytest.skip("sgc.pem.example not generated yet")
    monkeypatch.chdir(ROOT)
    assert check(Path("conf/realtime.toml")) == []
    settings = load_settings(Path("conf/realtime.toml"))
    assert settings.server.tls_cert is not None and settings.server.tls_cert.is_file()


def test_default_settings() -> None:
    settings = default_settings()
    assert settings.server.http == Addr("127.0.0.1", 8080)
    assert settings.server.https == Addr("127.0.0.1", 8443)
    assert settings.server.tls_cert is None and settings.server.tls_key is None
    assert settings.server.state_dir == Path("var")
    assert settings.server.public_url == "https://localhost:8443"
    assert settings.apps == {} and settings.users == {}
    assert settings.channels == (ChannelRule("chat:*", "chat:read", "chat:write", 100),)
    assert settings.config_path is None and settings.sources == ()
    assert default_settings(Path("/tmp/x")).server.state_dir == Path("/tmp/x")


def test_default_settings_with_overrides() -> None:
    settings = apply_overrides(default_settings(), http="127.0.0.1:0", https="", state_dir=Path("s"))
    assert settings.server.http == Addr("127.0.0.1", 0)
    assert settings.server.https is None
    assert settings.server.state_dir == Path("s")
    with pytest.raises(ConfigError) as info:
        apply_overrides(default_settings(), http="nope")
    assert str(info.value.issues[0]).startswith("<command line>: --http: bad address 'nope'")


# -- every key ----------------------------------------------------------------


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "realtime.toml", "")
    settings = load_settings(path)
    assert settings == Settings(config_path=path, sources=(path,))


def test_spec_section_2_example(tmp_path: Path, pem: Path) -> None:
    write(tmp_path / "apps.toml", "")
    write(tmp_path / "users.json", '{"users": []}')
    (tmp_path / "providers").mkdir()
    path = write(tmp_path / "realtime.toml", f"""
        [server]
        http = "0.0.0.0:80"
        https = "0.0.0.0:443"
        tls_cert = "{pem.relative_to(tmp_path)}"
        tls_key = "{pem.relative_to(tmp_path)}"
        state_dir = "var"
        public_url = "https://localhost"

        [oauth]
        apps = "apps.toml"
        users = "users.json"
        access_token_ttl = "15m"
        refresh_token_ttl = "30d"
        providers = "providers/"

        [websocket]
        path = "/ws"
        expiry_warning = "30s"
        token_in_query = false
        max_message_bytes = 65536
        ping_interval = "25s"
        pong_timeout = "10s"
        echo_path = "/ws-echo"

        [[channel]]
        pattern = "chat:*"
        subscribe_scope = "chat:read"
        publish_scope = "chat:write"
        history = 100
        presence = true
        join_leave = true

        [broker]
        url = "redis://127.0.0.1:6379/0"
    """)
    s = load_settings(path)
    assert s.server == ServerSettings(
        http=Addr("0.0.0.0", 80), https=Addr("0.0.0.0", 443), tls_cert=pem, tls_key=pem,
        state_dir=tmp_path / "var", public_url="https://localhost",
    )
    assert s.oauth == OAuthSettings(
        apps=tmp_path / "apps.toml", users=tmp_path / "users.json", providers=tmp_path / "providers",
        access_token_ttl=900, refresh_token_ttl=30 * 86400,
    )
    assert s.websocket == WebSocketSettings(echo_path="/ws-echo")
    assert s.channels == (ChannelRule("chat:*", "chat:read", "chat:write", 100, True, True),)
    assert s.broker == BrokerSettings("redis://127.0.0.1:6379/0")
    assert s.issuer == "https://localhost"


def _toml_value(value: Any) -> str | None:
    """A TOML literal for a settings default, as an operator would write it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f'"{format_duration(value)}"'
    if isinstance(value, (str, Addr, Path)):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) or "" for v in value) + "]"
    raise AssertionError(value)


@pytest.mark.parametrize(
    ("table", "cls"),
    [("server", ServerSettings), ("oauth", OAuthSettings), ("websocket", WebSocketSettings),
     ("broker", BrokerSettings), ("store", StoreSettings)],
)
def test_every_settings_field_is_a_key(tmp_path: Path, table: str, cls: type) -> None:
    """Writing each field's default back gives the default: the schema misses no field."""
    lines = [f"[{table}]"]
    for field in attrs.fields(cls):
        literal = _toml_value(field.default)
        if literal is not None:
            lines.append(f"{field.name} = {literal}")
    path = write(tmp_path / "realtime.toml", "\n".join(lines) + "\n")
    settings = load_settings(path)
    expected = cls()
    if table == "server":
        expected = attrs.evolve(expected, state_dir=tmp_path / "var")
    assert getattr(settings, table) == expected
    assert len(lines) > 1 or table in ("broker", "store")


def test_optional_settings_fields_are_keys(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    path = write(tmp_path / "realtime.toml", """
        [oauth]
        providers = "p"
        audience = "https://api.example.com"
        signing_alg = "EdDSA"
        [websocket]
        echo_path = "/echo"
        allowed_origins = ["https://a.example", "http://localhost:3000"]
        publish_rate = "100/10s"
        [broker]
        url = "rediss://cache:6380/1"
        [store]
        url = "postgresql://realtime:pw@db.internal:5432/realtime"
        key_file = "store.key"
    """)
    s = load_settings(path)
    assert s.store == StoreSettings("postgresql://realtime:pw@db.internal:5432/realtime", tmp_path / "store.key")
    assert s.oauth.audience == "https://api.example.com" and s.audience == "https://api.example.com"
    assert s.oauth.signing_alg == "EdDSA"
    assert s.websocket.allowed_origins == ("https://a.example", "http://localhost:3000")
    assert s.websocket.publish_rate == "100/10s"
    assert s.broker.url == "rediss://cache:6380/1"


def test_durations_in_every_form(tmp_path: Path) -> None:
    path = write(tmp_path / "realtime.toml", """
        [server]
        shutdown_grace = 3
        header_timeout = "1m30s"
        keepalive_timeout = 2.5
        [oauth]
        code_ttl = "500ms"
        leeway = "0"
    """)
    s = load_settings(path)
    assert (s.server.shutdown_grace, s.server.header_timeout, s.server.keepalive_timeout) == (3, 90, 2.5)
    assert (s.oauth.code_ttl, s.oauth.leeway) == (0.5, 0)


def test_channels_keep_their_order(tmp_path: Path) -> None:
    path = write(tmp_path / "realtime.toml", """
        [[channel]]
        pattern = "b:*"
        [[channel]]
        pattern = "a:*"
        history = 0
        [[channel]]
        pattern = "*"
    """)
    rules = load_settings(path).channels
    assert [r.pattern for r in rules] == ["b:*", "a:*", "*"]
    assert rules[0] == ChannelRule("b:*") and rules[1].history == 0


# -- errors: file, line and key -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "key", "message"),
    [
        ("[websocket]\npath = '/ws'\nmax_mesage_bytes = 10\n", 3, "websocket.max_mesage_bytes",
         "unknown key (did you mean 'max_message_bytes'?)"),
        ("[server]\nhtp = 'a:1'\n", 2, "server.htp", "unknown key (did you mean 'http'?)"),
        ("[servr]\nhttp = 'a:1'\n", 1, "servr", "unknown key (did you mean 'server'?)"),
        ("zzz = 1\n", 1, "zzz",
         "unknown key (valid keys: admin, api, broker, channel, demo, metrics, oauth, server, store, webhook, websocket)"),
        ("[[channel]]\npattern = 'a'\n[[channel]]\npattern = 'b'\nhistroy = 3\n", 5, "channel[2].histroy",
         "unknown key (did you mean 'history'?)"),
        ("[websocket]\nmax_message_bytes = '64k'\n", 2, "websocket.max_message_bytes",
         "expected an integer, got string"),
        ("[websocket]\nmax_message_bytes = 0\n", 2, "websocket.max_message_bytes", "must be at least 1, got 0"),
        ("[websocket]\ntoken_in_query = 'yes'\n", 2, "websocket.token_in_query", "expected true or false, got string"),
        ("[websocket]\nmax_message_bytes = true\n", 2, "websocket.max_message_bytes",
         "expected an integer, got boolean"),
        ("[server]\n\n\nhttp = 8080\n", 4, "server.http", "expected a string, got integer"),
        ("[server]\nhttp = '127.0.0.1:99999'\n", 2, "server.http",
         "bad address '127.0.0.1:99999': port must be a number from 0 to 65535"),
        ("[oauth]\naccess_token_ttl = '15 minutes'\n", 2, "oauth.access_token_ttl", "bad duration '15 minutes'"),
        ("[oauth]\naccess_token_ttl = '0s'\n", 2, "oauth.access_token_ttl", "must be longer than zero"),
        ("[oauth]\nrefresh_token_ttl = -5\n", 2, "oauth.refresh_token_ttl", "must not be negative"),
        ("[oauth]\nsigning_alg = 'HS256'\n", 2, "oauth.signing_alg", "must be one of RS256, ES256, EdDSA"),
        ("[oauth]\nlogin_rate = '10 per minute'\n", 2, "oauth.login_rate", "bad rate"),
        ("[websocket]\npublish_rate = 50\n", 2, "websocket.publish_rate", "expected a string, got integer"),
        ("[websocket]\npath = 'ws'\n", 2, "websocket.path", "must be a URL path starting with '/'"),
        ("[websocket]\necho_path = '/ws'\n", 2, "websocket.echo_path", "must differ from websocket.path"),
        ("[websocket]\nallowed_origins = ['https://a.example/']\n", 2, "websocket.allowed_origins", "not an origin"),
        ("[server]\npublic_url = 'localhost'\n", 2, "server.public_url", "must be an absolute http(s) URL"),
        ("[server]\npublic_url = 'ftp://localhost'\n", 2, "server.public_url", "must be an absolute http(s) URL"),
        ("[server]\npublic_url = 'https://localhost/?x=1'\n", 2, "server.public_url",
         "must not have a query or fragment"),
        ("[server]\npublic_url = 'https://localhost/#top'\n", 2, "server.public_url",
         "must not have a query or fragment"),
        ("[server]\npublic_url = 'https://u:p@localhost/'\n", 2, "server.public_url", "a user name or a password"),
        ("[server]\nlog_level = 'loud'\n", 2, "server.log_level", "must be one of debug"),
        ("[server]\nstate_dir = ''\n", 2, "server.state_dir", "must not be empty"),
        ("server = 3\n", 1, "server", "expected a table, got integer"),
        ("[channel]\npattern = 'a'\n", 1, "channel", "expected [[channel]] tables, got table"),
        ("[[channel]]\nsubscribe_scope = 'a'\n", 1, "channel[1].pattern", "missing required key"),
        ("[[channel]]\npattern = ''\n", 2, "channel[1].pattern", "must not be empty"),
        ("[[channel]]\npattern = 'a'\nhistory = -1\n", 3, "channel[1].history", "must be at least 0"),
        ("[[channel]]\npattern = 'a'\npublish_scope = 'a b'\n", 3, "channel[1].publish_scope", "is not a scope"),
        ("[[channel]]\npattern = 'a'\n[[channel]]\npattern = 'a'\n", 4, "channel[2].pattern",
         "duplicate pattern 'a' (lines 2 and 4)"),
        ("[broker]\nurl = 'http://x'\n", 2, "broker.url", "must be a redis://HOST:PORT/DB URL"),
        ("[store]\nurl = 'redis://db:5432/x'\n", 2, "store.url", "must be a postgresql://USER@HOST:PORT/DB URL"),
        ("[store]\n\nurl = 'postgresql://'\n", 3, "store.url", "must be a postgresql://USER@HOST:PORT/DB URL"),
        ("[store]\nurl = 'postgresql://db:99999/x'\n", 2, "store.url", "must be a postgresql://USER@HOST:PORT/DB URL"),
        ("[store]\nkey_file = ''\n", 2, "store.key_file", "must not be empty"),
        ("[store]\n\nurl = 'postgresql://db/realtime'\n", 3, "store.url", "needs [store] key_file too"),
        ("[store]\nurl = 5\n", 2, "store.url", "expected a string, got integer"),
        ("[server]\nhttp = ''\nhttps = ''\n", 3, "server.https", "both listeners are off"),
        ("[server]\nhttp = '127.0.0.1:80'\nhttps = '127.0.0.1:80'\n", 3, "server.https",
         "http and https both use 127.0.0.1:80"),
        ("[oauth]\nproviders = 'nowhere/'\n", 2, "oauth.providers", "directory not found"),
    ],
)
def test_error_names_line_and_key(tmp_path: Path, body: str, line: int, key: str, message: str) -> None:
    path = write(tmp_path / "realtime.toml", body)
    issue = only_issue(path)
    assert (issue.file, issue.line, issue.key) == (path, line, key)
    assert message in issue.message
    assert str(issue) == f"{path}:{line}: {key}: {issue.message}"


def test_issue_format() -> None:
    issue = ConfigIssue(Path("conf/realtime.toml"), 12, "websocket.max_mesage_bytes",
                        "unknown key (did you mean 'max_message_bytes'?)")
    assert str(issue) == (
        "conf/realtime.toml:12: websocket.max_mesage_bytes: unknown key (did you mean 'max_message_bytes'?)"
    )
    assert str(ConfigIssue(Path("a.toml"), None, None, "file not found")) == "a.toml: file not found"
    assert str(ConfigIssue(Path("a.toml"), 3, None, "x")) == "a.toml:3: x"
    assert str(ConfigIssue(Path("a.toml"), None, "k", "x")) == "a.toml: k: x"


def test_toml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "realtime.toml", "[server]\nhttp = '127.0.0.1:80'\nhttps = \n")
    issue = only_issue(path)
    assert (issue.line, issue.key) == (3, None)
    assert issue.message.startswith("TOML syntax error: ")
    assert "(at line" not in issue.message


def test_toml_duplicate_key_is_a_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path / "realtime.toml", "[server]\nwatch = true\nwatch = false\n")
    issue = only_issue(path)
    assert issue.line == 3 and "syntax error" in issue.message


def test_missing_config_file(tmp_path: Path) -> None:
    issue = only_issue(tmp_path / "nope.toml")
    assert str(issue) == f"{tmp_path / 'nope.toml'}: file not found"
    assert check(tmp_path / "nope.toml") == [issue]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "realtime.toml"
    path.write_bytes(b"[server]\n# caf\xe9\n")
    issue = only_issue(path)
    assert (issue.line, issue.message) == (2, "not valid UTF-8")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "realtime.toml"
    path.write_bytes(b"\xef\xbb\xbf[server]\nwatch = true\n")
    assert load_settings(path).server.watch is True


def test_many_issues_in_one_table_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "realtime.toml", """
        [websocket]
        path = 1
        expiry_warning = "soon"
        max_message_bytes = -1
        pong_timeout = "10s"
        bogus = 1
    """)
    issues = issues_of(path)
    assert [(i.line, i.key) for i in issues] == [
        (2, "websocket.path"), (3, "websocket.expiry_warning"), (4, "websocket.max_message_bytes"),
        (6, "websocket.bogus"),
    ]


def test_every_issue_across_files_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "apps.toml", """
        [[app]]
        name = "x"
        client_id = "x"
        public = true
        redirect_uris = ["https://ok.example/cb"]
        grant_types = ["implicit"]
    """)
    write(tmp_path / "users.json", """
        {"users": [
          {"name": "alice"},
          {"name": "bob", "scope": ["chat:read"]}
        ]}
    """)
    path = write(tmp_path / "realtime.toml", """
        [server]
        http = "nowhere"
        [oauth]
        apps = "apps.toml"
        users = "users.json"
        [websocket]
        ping_interval = "often"
    """)
    issues = issues_of(path)
    where = [(i.file.name, i.line, i.key) for i in issues]
    assert where == [
        ("realtime.toml", 2, "server.http"),
        ("realtime.toml", 7, "websocket.ping_interval"),
        ("apps.toml", 6, "app[1].grant_types"),
        ("users.json", 3, "users[2].scope"),
    ]
    assert "did you mean 'scopes'?" in issues[-1].message
    assert check(path) == issues


def test_check_of_a_valid_file_is_empty(tmp_path: Path) -> None:
    assert check(write(tmp_path / "realtime.toml", "[server]\nwatch = true\n")) == []


# -- paths -----------------------------------------------------------------------------


def test_paths_resolve_relative_to_the_config_file(tmp_path: Path, pem: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "etc" / "realtime"
    write(conf / "sub" / "apps.toml", "")
    write(conf / "users.toml", "")
    (conf / "prov").mkdir()
    shutil.copy(pem, conf / "cert.pem")
    path = write(conf / "realtime.toml", """
        [server]
        tls_cert = "cert.pem"
        state_dir = "../var"
        [oauth]
        apps = "sub/apps.toml"
        users = "users.toml"
        providers = "prov"
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = load_settings(path)
    assert s.server.tls_cert == s.server.tls_key == conf / "cert.pem"
    assert s.server.state_dir == conf / "../var"
    assert s.oauth.apps == conf / "sub" / "apps.toml"
    assert s.oauth.users == conf / "users.toml"
    assert s.oauth.providers == conf / "prov"
    assert s.sources == (path, conf / "sub" / "apps.toml", conf / "users.toml", conf / "prov")
    # The same config named by a relative path still resolves from its own directory.
    monkeypatch.chdir(tmp_path)
    rel = load_settings(Path("etc/realtime/realtime.toml"))
    assert rel.oauth.apps == Path("etc/realtime/sub/apps.toml")
    assert rel.oauth.apps.is_file()


def test_absolute_paths_stay_absolute(tmp_path: Path) -> None:
    apps = write(tmp_path / "elsewhere" / "apps.toml", "")
    path = write(tmp_path / "conf" / "realtime.toml", f'[oauth]\napps = "{apps}"\n')
    assert load_settings(path).oauth.apps == apps


def test_command_line_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "conf" / "realtime.toml", "[server]\nstate_dir = 'state'\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings(path, http="", https="[::1]:0", state_dir=Path("mine"))
    assert s.server.http is None
    assert s.server.https == Addr("::1", 0)
    assert s.server.state_dir == Path("mine")  # relative to the working directory
    assert load_settings(path).server.state_dir == path.parent / "state"


def test_bad_command_line_override(tmp_path: Path) -> None:
    path = write(tmp_path / "realtime.toml", "")
    issue = only_issue(path, https="localhost")
    assert (issue.file, issue.line, issue.key) == (Path("<command line>"), None, "--https")
    assert "missing port" in issue.message
    both_off = only_issue(path, http="", https="")
    assert both_off.file == path and "both listeners are off" in both_off.message


def test_missing_apps_and_users_files_are_named(tmp_path: Path) -> None:
    path = write(tmp_path / "realtime.toml", """
        [oauth]
        apps = "apps.toml"
        users = "people/users.json"
    """)
    issues = issues_of(path)
    assert [(i.file, i.line, i.key) for i in issues] == [
        (path, 2, "oauth.apps"), (path, 3, "oauth.users")]
    assert issues[0].message == f"file not found: {tmp_path / 'apps.toml'}"
    assert issues[1].message == f"file not found: {tmp_path / 'people' / 'users.json'}"


def test_apps_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "apps.toml").mkdir()
    issue = only_issue(write(tmp_path / "realtime.toml", "[oauth]\napps = 'apps.toml'\n"))
    assert issue.key == "oauth.apps" and "is not a file" in issue.message


def test_no_registry_keys_means_empty_registries(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path / "realtime.toml", "[oauth]\naccess_token_ttl = 60\n"))
    assert s.apps == {} and s.users == {} and s.oauth.apps is None


# -- TLS ---------------------------------------------------------------------------------


def test_cert_and_key_in_separate_files(tmp_path: Path, ca: trustme.CA) -> None:
    cert = ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    s = load_settings(write(tmp_path / "realtime.toml", "[server]\ntls_cert = 'cert.pem'\ntls_key = 'key.pem'\n"))
    assert (s.server.tls_cert, s.server.tls_key) == (tmp_path / "cert.pem", tmp_path / "key.pem")


@pytest.mark.parametrize("given", ["tls_cert", "tls_key"])
def test_one_tls_key_means_one_file(tmp_path: Path, pem: Path, given: str) -> None:
    s = load_settings(write(tmp_path / "realtime.toml", f"[server]\n{given} = '{pem}'\n"))
    assert s.server.tls_cert == s.server.tls_key == pem


def test_cert_key_mismatch(tmp_path: Path, ca: trustme.CA) -> None:
    ca.issue_cert("a").cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.issue_cert("b").private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    path = write(tmp_path / "realtime.toml", "[server]\ntls_cert = 'cert.pem'\ntls_key = 'key.pem'\n")
    issue = only_issue(path)
    assert (issue.line, issue.key) == (3, "server.tls_key")
    assert "does not match the certificate" in issue.message
    assert str(tmp_path / "key.pem") in issue.message and str(tmp_path / "cert.pem") in issue.message


@pytest.mark.parametrize(
    ("content", "key", "message"),
    [
        (None, "server.tls_cert", "file not found"),
        (b"hello\n", "server.tls_cert", "no PEM certificate found"),
        ("key-only", "server.tls_cert", "no PEM certificate found"),
        ("cert-only", "server.tls_key", "no usable PEM private key found"),
        ("encrypted", "server.tls_key", "the private key is encrypted"),
    ],
)
def test_unusable_tls_file(tmp_path: Path, ca: trustme.CA, content: Any, key: str, message: str) -> None:
    target = tmp_path / "bad.pem"
    issued = ca.issue_cert("localhost")
    if content == "key-only":
        content = issued.private_key_pem.bytes()
    elif content == "cert-only":
        content = issued.cert_chain_pems[0].bytes()
    elif content == "encrypted":
        pk = ec.generate_private_key(ec.SECP256R1())
        content = issued.cert_chain_pems[0].bytes() + pk.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"))
    if content is not None:
        target.write_bytes(content)
    path = write(tmp_path / "realtime.toml", "[server]\nhttps = '127.0.0.1:0'\ntls_cert = 'bad.pem'\n")
    issues = issues_of(path)
    [issue] = [i for i in issues if i.key == key]
    assert message in issue.message and str(target) in issue.message
    assert issue.line == (3 if key == "server.tls_cert" else 1)  # tls_key is absent: its table's line
    assert len(issues) == (2 if content == b"hello\n" else 1)  # junk has neither cert nor key


# -- apps.toml -------------------------------------------------------------------------------


def apps_file(tmp_path: Path, text: str) -> Path:
    return write(tmp_path / "apps.toml", text)


def app_issues(path: Path) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load_apps(path)
    return info.value.issues


# The shape `realtime app add --oauth1` writes (AES-GCM under state_dir/oauth1.key).
ENC = "aesgcm1:" + "A" * 60


def test_apps_load(tmp_path: Path) -> None:
    path = apps_file(tmp_path, f"""
        [[app]]
        name = "Back end"
        client_id = "backend"
        client_secret_hash = "{HASH}"
        redirect_uris = ["https://b.example/cb", "com.example.app:/oauth2redirect", "http://[::1]:9/cb"]
        grant_types = ["authorization_code", "client_credentials", "password", "refresh_token"]
        scopes = ["chat:read", "news:write"]
        access_token_ttl = "5m"
        refresh_token_ttl = "7d"
        oauth1 = true
        consumer_key = "ck-backend"
        consumer_secret_enc = "{ENC}"
        oauth1_token_ttl = "30d"
        retired_secrets = [
            {{ hash = "{HASH}", expires_at = 2030-01-01T00:00:00Z }},
            {{ hash = "{HASH}", expires_at = 1900000000 }},
            {{ hash = "{HASH}", expires_at = "2030-01-01T01:00:00+01:00" }},
        ]

        [[app]]
        name = "Machine"
        client_id = "machine"
        client_secret_hash = "{HASH}"
        grant_types = ["client_credentials"]
    """)
    apps = load_apps(path)
    assert list(apps) == ["backend", "machine"]
    epoch = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
    assert apps["backend"] == App(
        name="Back end", client_id="backend", client_secret_hash=HASH,
        retired_secrets=(RetiredSecret(HASH, epoch), RetiredSecret(HASH, 1900000000.0), RetiredSecret(HASH, epoch)),
        redirect_uris=("https://b.example/cb", "com.example.app:/oauth2redirect", "http://[::1]:9/cb"),
        grant_types=("authorization_code", "client_credentials", "password", "refresh_token"),
        scopes=("chat:read", "news:write"), access_token_ttl=300, refresh_token_ttl=7 * 86400, oauth1=True,
        consumer_key="ck-backend", consumer_secret_enc=ENC, oauth1_token_ttl=30 * 86400,
    )
    assert apps["machine"].redirect_uris == () and apps["machine"].public is False


def test_empty_apps_file(tmp_path: Path) -> None:
    assert load_apps(apps_file(tmp_path, "# nothing yet\n")) == {}


def test_duplicate_client_id_names_both_lines(tmp_path: Path) -> None:
    path = apps_file(tmp_path, """
        [[app]]
        name = "a"
        client_id = "same"
        public = true
        redirect_uris = ["https://a.example/cb"]

        [[app]]
        name = "b"
        client_id = "same"
        public = true
        redirect_uris = ["https://b.example/cb"]
    """)
    [issue] = app_issues(path)
    assert (issue.file, issue.line, issue.key) == (path, 9, "app[2].client_id")
    assert issue.message == "duplicate client_id 'same' (lines 3 and 9)"


@pytest.mark.parametrize(
    ("body", "line", "key", "message"),
    [
        ('public = true\nclient_secret_hash = "$HASH"\n', 2, "app[1].client_secret_hash",
         "a public app (public = true) must not have a secret"),
        ("", 0, "app[1]", "a confidential app needs client_secret_hash"),
        ('public = true\nclient_secret = "s3cret"\n', 2, "app[1].client_secret",
         "unknown key (did you mean 'client_secret_hash'?)"),
        ('client_secret_hash = "s3cret"\n', 1, "app[1].client_secret_hash", "not a clear-text secret"),
        ('public = true\ngrant_types = ["client_credentials"]\n', 2, "app[1].grant_types",
         "client_credentials needs a confidential app"),
        ('public = true\ngrant_types = ["implicit"]\n', 2, "app[1].grant_types",
         "must be one of authorization_code, refresh_token, client_credentials, password, "
         "urn:ietf:params:oauth:grant-type:device_code, got 'implicit'"),
        ('public = true\nredirect_uris = []\n', 2, "app[1].redirect_uris",
         "authorization_code needs at least one redirect URI"),
        ('public = "yes"\n', 1, "app[1].public", "expected true or false, got string"),
        ('public = true\naccess_token_ttl = "forever"\n', 2, "app[1].access_token_ttl", "bad duration"),
        ('public = true\nscopes = ["ok", "not ok"]\n', 2, "app[1].scopes", "item 2: 'not ok' is not a scope"),
        ('public = true\nretired_secrets = [{ hash = "$HASH" }]\n', 2, "app[1].retired_secrets[1].expires_at",
         "missing required key"),
        ('public = true\nretired_secrets = [{ hash = "$HASH", expires_at = 2030-01-01T00:00:00 }]\n', 2,
         "app[1].retired_secrets[1].expires_at", "needs a UTC offset"),
        ('public = true\nretired_secrets = [{ hash = "$HASH", expires_at = "soon" }]\n', 2,
         "app[1].retired_secrets[1].expires_at", "is not an RFC 3339 date-time"),
        ('public = true\nretired_secrets = "x"\n', 2, "app[1].retired_secrets", "expected an array of tables"),
    ],
)
def test_app_rules(tmp_path: Path, body: str, line: int, key: str, message: str) -> None:
    """``line`` counts within ``body`` (0: the [[app]] header on line 2)."""
    head = '# apps\n[[app]]\nname = "n"\nclient_id = "c"\nredirect_uris = ["https://c.example/cb"]\n'
    if "redirect_uris" in body:
        head = head.replace('redirect_uris = ["https://c.example/cb"]\n', "")
    path = apps_file(tmp_path, head + body.replace("$HASH", HASH))
    issues = app_issues(path)
    assert len(issues) == 1, [str(i) for i in issues]
    expected_line = 2 if line == 0 else head.count("\n") + line
    assert (issues[0].line, issues[0].key) == (expected_line, key)
    assert message in issues[0].message


def test_app_required_keys(tmp_path: Path) -> None:
    path = apps_file(tmp_path, "[[app]]\npublic = true\nredirect_uris = ['https://x.example/']\n")
    assert [(i.line, i.key, i.message) for i in app_issues(path)] == [
        (1, "app[1].name", "missing required key"), (1, "app[1].client_id", "missing required key")]


@pytest.mark.parametrize(
    "uri",
    ["https://app.example/cb", "https://app.example:8443/cb?x=1", "http://localhost/cb",
     "http://127.0.0.1:8080/cb", "http://[::1]/cb", "com.example.app:/oauth2redirect", "myapp://callback"],
)
def test_good_redirect_uris(tmp_path: Path, uri: str) -> None:
    path = apps_file(tmp_path, f'[[app]]\nname = "n"\nclient_id = "c"\npublic = true\nredirect_uris = ["{uri}"]\n')
    assert load_apps(path)["c"].redirect_uris == (uri,)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/cb", "not an absolute URI"),
        ("app.example/cb", "not an absolute URI"),
        ("https://app.example/cb#x", "must not have a fragment"),
        ("http://app.example/cb", "http is allowed only for localhost"),
        ("http://localhost.evil.example/cb", "http is allowed only for localhost"),
        ("https:///cb", "has no host"),
        ("https:app.example", "has no host"),
        ("https://user@app.example/cb", "user name or password"),
        ("https://app.example:99999/cb", "bad port"),
        ("javascript:alert(1)", "scheme is not allowed"),
        ("data:text/html,x", "scheme is not allowed"),
        ("https://app.example/c b", "spaces or control characters"),
        ("1app:/cb", "not an absolute URI"),
    ],
)
def test_bad_redirect_uris(tmp_path: Path, uri: str, message: str) -> None:
    path = apps_file(tmp_path, f'[[app]]\nname = "n"\nclient_id = "c"\npublic = true\nredirect_uris = ["{uri}"]\n')
    [issue] = app_issues(path)
    assert (issue.line, issue.key) == (5, "app[1].redirect_uris")
    assert message in issue.message


def test_apps_file_shape(tmp_path: Path) -> None:
    issues = app_issues(apps_file(tmp_path, "[ap]\nname = 'x'\n"))
    assert [(i.line, i.key, i.message) for i in issues] == [(1, "ap", "unknown key (did you mean 'app'?)")]
    issues = app_issues(apps_file(tmp_path, "[app]\nname = 'x'\n"))
    assert issues[0].key == "app" and "expected [[app]] tables" in issues[0].message


def test_app_errors_in_many_apps_keep_their_lines(tmp_path: Path) -> None:
    path = apps_file(tmp_path, """
        [[app]]
        name = "one"
        client_id = "one"
        public = true
        redirect_uris = ["https://one.example/"]

        [[app]]
        name = "two"
        client_id = "two"
        public = true
        redirect_uris = ["https://two.example/"]
        scopse = ["x"]

        [[app]]
        name = "three"
        client_id = "three"
        public = 1
        redirect_uris = ["https://three.example/"]
    """)
    assert [(i.line, i.key) for i in app_issues(path)] == [(12, "app[2].scopse"), (17, "app[3].public")]


# -- users -------------------------------------------------------------------------------


def test_users_json_object_form(tmp_path: Path) -> None:
    path = write(tmp_path / "users.json", f"""
        {{"users": [
          {{"name": "alice", "password_hash": "{HASH}", "scopes": ["chat:read"],
           "display_name": "Alice", "email": "alice@example.com"}},
          {{"name": "bob", "disabled": true, "email": null}}
        ]}}
    """)
    assert load_users(path) == {
        "alice": User("alice", HASH, ("chat:read",), False, "Alice", "alice@example.com"),
        "bob": User("bob", disabled=True),
    }


def test_users_json_list_form_and_toml(tmp_path: Path) -> None:
    assert load_users(write(tmp_path / "users.json", '[{"name": "a"}, {"name": "b"}]')) == {
        "a": User("a"), "b": User("b")}
    toml = write(tmp_path / "users.toml", f"""
        [[user]]
        name = "carol"
        password_hash = "{HASH}"
        scopes = ["news:read"]

        [[user]]
        name = "dave"
        disabled = true
        emial = "d@example.com"
    """)
    [issue] = app_issues_users(toml)
    assert (issue.line, issue.key) == (9, "user[2].emial")
    assert issue.message == "unknown key (did you mean 'email'?)"


def app_issues_users(path: Path) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load_users(path)
    return info.value.issues


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ('{"users": [\n  {"name": "a"},\n  {"name": "a"}\n]}', 3, "users[2].name",
         "duplicate name 'a' (lines 2 and 3)"),
        ('{"users": [\n  {"name": "a"},\n  {"name": "A"}\n]}', 3, "users[2].name", "differs only in case"),
        ('{"users": [\n  {"name": "a",\n   "scopes": "chat:read"}\n]}', 3, "users[1].scopes",
         "expected an array, got string"),
        ('{"users": [\n  {"name": "a"},\n  {"name": "b",\n   "password_hash": "hunter2"}\n]}', 4,
         "users[2].password_hash", "not a clear-text secret"),
        ('{"users": [\n  {"scopes": []}\n]}', 2, "users[1].name", "missing required key"),
        ('{"users": [\n  {"name": "a:b"}\n]}', 2, "users[1].name", "is not a user name"),
        ('{"users": [\n  {"name": " a"}\n]}', 2, "users[1].name", "is not a user name"),
        ('{"users": [\n  {"name": "a", "email": "nope"}\n]}', 2, "users[1].email", "is not an e-mail address"),
        ('{"users": [\n  {"name": "a", "disabled": 1}\n]}', 2, "users[1].disabled", "expected true or false"),
        ('{"users": [\n  "alice"\n]}', 2, "users[1]", "expected a table, got string"),
        ('{"users": [],\n "user": []}', 2, "user", "unknown key (did you mean 'users'?)"),
        ('{"users": {}}', 1, "users", "expected an array of users, got table"),
        ('"alice"', 1, None, 'expected {"users": [...]} or an array of users, got string'),
        ('{"users": [\n  {"name": "a",\n   "name": "b"}\n]}', 3, "users[1].name", "duplicate key (lines 2 and 3)"),
        ('{"users": [\n  {"name": "a",}\n]}', 2, None, "JSON syntax error: Expecting property name"),
        ('', 1, None, "JSON syntax error"),
    ],
)
def test_user_errors(tmp_path: Path, text: str, line: int, key: str | None, message: str) -> None:
    path = tmp_path / "users.json"
    path.write_text(text)
    issues = app_issues_users(path)
    assert len(issues) == 1, [str(i) for i in issues]
    assert (issues[0].file, issues[0].line, issues[0].key) == (path, line, key)
    assert message in issues[0].message


def test_empty_user_files(tmp_path: Path) -> None:
    assert load_users(write(tmp_path / "users.json", "{}")) == {}
    assert load_users(write(tmp_path / "users.json", "[]")) == {}
    assert load_users(write(tmp_path / "users.toml", "")) == {}


def test_users_are_loaded_into_settings(tmp_path: Path) -> None:
    write(tmp_path / "users.toml", '[[user]]\nname = "eve"\nscopes = ["chat:read"]\n')
    s = load_settings(write(tmp_path / "realtime.toml", "[oauth]\nusers = 'users.toml'\n"))
    assert s.users == {"eve": User("eve", scopes=("chat:read",))}


# -- the line locator ---------------------------------------------------------------------


def test_toml_locator_on_a_tricky_file() -> None:
    text = textwrap.dedent('''\
        # [server] in a comment
        title = "x"   # [websocket]
        [server]
        http = "a:1"
        motd = """
        fake = 1
        [websocket]
        """
        arr = [
          1, # ]
          {a = 1, b = [2, 3]},
          { hash = "h", expires_at = 1979-05-27T07:32:00Z },
        ]
        "quoted.key" = 1
        dotted.sub = 2
        'lit' = 'x'

        [[channel]]
        pattern = "a"

        [[channel]]
        pattern = "b"
        [channel.extra]
        k = 1
        [ websocket ]
        path = "/ws"
        [[app]]
          name = 'x'
          [[app.retired_secrets]]
          hash = "y"
          [[app.retired_secrets]]
          hash = "z"
        ''')
    index = index_toml(text)
    assert index.line_of(("title",)) == 2
    assert index.line_of(("server",)) == 3
    assert index.line_of(("server", "http")) == 4
    assert index.line_of(("server", "motd")) == 5
    assert index.line_of(("server", "fake")) == 3  # inside a string: falls back to the table
    assert index.line_of(("server", "arr", 0)) == 10
    assert index.line_of(("server", "arr", 1, "b", 1)) == 11
    assert index.line_of(("server", "arr", 2, "expires_at")) == 12
    assert index.line_of(("server", "quoted.key")) == 14
    assert index.line_of(("server", "dotted", "sub")) == 15
    assert index.line_of(("server", "lit")) == 16
    assert index.line_of(("channel", 0, "pattern")) == 19
    assert index.line_of(("channel", 1)) == 21
    assert index.line_of(("channel", 1, "pattern")) == 22
    assert index.line_of(("channel", 1, "extra", "k")) == 24
    assert index.line_of(("channel", 1, "history")) == 21
    assert index.line_of(("websocket", "path")) == 26
    assert index.line_of(("app", 0, "retired_secrets", 1, "hash")) == 32
    assert index.line_of(("nothing",)) is None


def test_toml_locator_agrees_with_tomllib_on_the_example() -> None:
    import tomllib

    text = (ROOT / "conf" / "realtime.toml").read_text()
    data = tomllib.loads(text)
    index = index_toml(text)
    lines = text.splitlines()
    for table, values in data.items():
        rows = values if isinstance(values, list) else [values]
        for n, row in enumerate(rows):
            for key in row:
                path = (table, n, key) if isinstance(values, list) else (table, key)
                line = index.line_of(path)
                assert line is not None and lines[line - 1].lstrip().startswith(key), (path, line)


def test_json_locator() -> None:
    text = '{\n "users": [\n  {"name": "a"},\n  {\n   "name": "b\\"q",\n   "x": [1, {"y": 2}]\n  }\n ]\n}\n'
    index = index_json(text)
    assert index.line_of(("users",)) == 2
    assert index.line_of(("users", 0, "name")) == 3
    assert index.line_of(("users", 1)) == 4
    assert index.line_of(("users", 1, "name")) == 5
    assert index.line_of(("users", 1, "x", 1, "y")) == 6
    assert index.line_of(("users", 1, "missing")) == 4
