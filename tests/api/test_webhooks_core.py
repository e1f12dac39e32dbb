"""The sans-I/O webhook core: signature and its check, the retry rules,
backoff, the outbox's lanes and bound; and the [[webhook]] tables read
from a real config file (file, line and key on every bad value)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from realtime.api import webhooks as core
from realtime.config.load import ConfigError, load_settings
from realtime.config.settings import WebhookSettings


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    header = core.sign(b"s3cret", 1_700_000_000, body)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert core.verify(b"s3cret", header, body, now=1_700_000_100)
    assert not core.verify(b"other", header, body, now=1_700_000_100)
    assert not core.verify(b"s3cret", header, body + b" ", now=1_700_000_100)
    assert not core.verify(b"s3cret", header, body, now=1_700_001_000)  # too old: a replay
    assert not core.verify(b"s3cret", "garbage", body, now=1_700_000_000)


@pytest.mark.parametrize(("status", "verdict"), [
    (200, "done"), (204, "done"), (None, "retry"), (500, "retry"), (503, "retry"), (429, "retry"),
    (408, "retry"), (400, "give_up"), (401, "give_up"), (404, "give_up"), (410, "give_up"), (301, "give_up"),
])
def test_outcome(status: int | None, verdict: str) -> None:
    assert core.outcome(status) == verdict


def test_backoff_doubles_to_a_cap() -> None:
    assert [core.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert core.backoff(20) == 30.0 and core.backoff(1, jitter=1.0) == 0.75


def test_the_outbox_keeps_one_channel_in_one_lane_and_is_bounded() -> None:
    stats = core.WebhookStats()
    box = core.Outbox(WebhookSettings(url="https://x", secret=b"s", queue_size=3, events=("publish", "connect")),
                      stats)
    lanes = {box.put(core.build("publish", {"channel": "c", "seq": n}, "node", 0.0)) for n in (1, 2)}
    assert len(lanes) == 1
    lane = lanes.pop()
    assert box.put(core.build("subscribe", {"channel": "c"}, "node", 0.0)) is None  # not wanted
    assert stats.dropped == 0
    assert box.put(core.build("connect", {"sub": "alice"}, "node", 0.0)) is not None
    assert box.put(core.build("publish", {"channel": "c", "seq": 3}, "node", 0.0)) is None  # full
    assert stats.dropped == 1 and stats.enqueued == 3
    assert box.head(lane).data["seq"] == 1
    box.done(lane)
    assert box.head(lane).data["seq"] == 2 and box.size == 2


def test_body_is_the_event_object() -> None:
    event = core.build("publish", {"channel": "c", "data": "é"}, "n1", 12.3456)
    assert core.body_of(event) == (
        '{"id":"%s","type":"publish","time":12.346,"node":"n1","data":{"channel":"c","data":"é"}}' % event.id
    ).encode()


def _conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "realtime.toml"
    path.write_text(text)
    return path


def test_webhook_tables_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "from-env")
    (tmp_path / "hook.secret").write_text("from-file\n")
    settings = load_settings(_conf(tmp_path, """
[[webhook]]
url = "https://hooks.example.com/realtime"
events = ["connect", "publish"]
secret_env = "HOOK_SECRET"
timeout = "2s"
max_attempts = 3

[[webhook]]
url = "http://127.0.0.1:9000/hook"
secret_file = "hook.secret"
queue_size = 50
"""))
    first, second = settings.webhooks
    assert first == WebhookSettings(url="https://hooks.example.com/realtime", secret=b"from-env",
                                    events=("connect", "publish"), timeout=2.0, max_attempts=3)
    assert second.secret == b"from-file" and second.queue_size == 50 and second.max_attempts == 5
    assert second.events == core.WebhookSettings.__attrs_attrs__.events.default
    assert "from-env" not in repr(first)  # never in a log line
    assert load_settings(_conf(tmp_path, "")).webhooks == ()


@pytest.mark.parametrize(("text", "key"), [
    ('url = "http://hooks.example.com/x"\nsecret_env = "HOOK_SECRET"', "webhook[1].url"),
    ('url = "ftp://127.0.0.1/x"\nsecret_env = "HOOK_SECRET"', "webhook[1].url"),
    ('url = "https://u:p@hooks.example.com/x"\nsecret_env = "HOOK_SECRET"', "webhook[1].url"),
    ('url = "https://h/x"\nsecret_env = "NOT_SET_ANYWHERE"', "webhook[1].secret_env"),
    ('url = "https://h/x"\nsecret_file = "missing.secret"', "webhook[1].secret_file"),
    ('url = "https://h/x"', "webhook[1]"),
    ('url = "https://h/x"\nsecret_env = "HOOK_SECRET"\nsecret_file = "x"', "webhook[1]"),
    ('url = "https://h/x"\nsecret_env = "HOOK_SECRET"\nevents = ["conect"]', "webhook[1].events"),
    ('url = "https://h/x"\nsecret_env = "HOOK_SECRET"\ntimeout = "0s"', "webhook[1].timeout"),
    ('url = "https://h/x"\nsecret_env = "HOOK_SECRET"\nmax_attempts = 0', "webhook[1].max_attempts"),
    ('url = "https://h/x"\nsecret_env = "HOOK_SECRET"\nretries = 3', "webhook[1].retries"),
])
def test_a_bad_webhook_names_file_line_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               text: str, key: str) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = _conf(tmp_path, "\n[[webhook]]\n" + text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    [issue] = caught.value.issues
    assert issue.file == path and issue.key == key and issue.line is not None and issue.line >= 2, issue
