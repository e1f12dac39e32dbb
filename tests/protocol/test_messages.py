"""The sans-I/O message layer: parse every client message, build every reply."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtime.protocol import messages
from realtime.protocol import replies
from realtime.protocol.messages import (
    InvalidJSON,
    MessageError,
    Ping,
    Presence,
    Publish,
    Refresh,
    Subscribe,
    Unsubscribe,
    parse_client_message,
)


def parse(obj: object, **kw: int) -> messages.ClientMessage:
    return parse_client_message(json.dumps(obj), **kw)


def refused(obj: object, **kw: int) -> MessageError:
    with pytest.raises(MessageError) as info:
        parse(obj, **kw)
    return info.value


# -- good messages ----------------------------------------------------------


def test_subscribe() -> None:
    assert parse({"type": "subscribe", "channel": "chat:a"}) == Subscribe(None, "chat:a", None)
    assert parse({"type": "subscribe", "channel": "c", "since": 0, "id": 1}) == Subscribe(1, "c", 0)
    assert parse({"type": "subscribe", "channel": "c", "since": None, "id": "x"}) == Subscribe(
        "x", "c", None
    )


def test_other_messages() -> None:
    assert parse({"type": "unsubscribe", "channel": "c", "id": "u"}) == Unsubscribe("u", "c")
    assert parse({"type": "publish", "channel": "c", "data": {"a": [1, 2.5, None]}}) == Publish(
        None, "c", {"a": [1, 2.5, None]}
    )
    assert parse({"type": "publish", "channel": "c", "data": None}) == Publish(None, "c", None)
    assert parse({"type": "refresh", "token": "abc", "id": 3}) == Refresh(3, "abc")
    assert parse({"type": "ping"}) == Ping(None)
    assert parse({"type": "ping", "id": 0}) == Ping(0)
    assert parse({"type": "presence", "channel": "room"}) == Presence(None, "room")


def test_refresh_repr_hides_token() -> None:
    assert "secret-token" not in repr(Refresh(1, "secret-token"))


def test_unicode_channel() -> None:
    assert parse({"type": "subscribe", "channel": "chat:héllo-世界"}).channel == "chat:héllo-世界"


# -- invalid JSON closes with 1007 -------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "{", "not json", '{"type":"ping"', "[1,]", "{'type':'ping'}", "NaN", '{"type":"ping","x":NaN}',
     "Infinity", "-Infinity", '{"a":1}x'],
)
def test_invalid_json(text: str) -> None:
    with pytest.raises(InvalidJSON) as info:
        parse_client_message(text)
    assert info.value.close_code == 1007


# -- refused messages keep the connection -------------------------------------


@pytest.mark.parametrize("obj", [[], [1], "ping", 1, None, True])
def test_not_an_object(obj: object) -> None:
    err = refused(obj)
    assert (err.code, err.id) == ("bad_message", None)


def test_type_problems() -> None:
    assert refused({"id": 5}).code == "bad_message"
    assert refused({"id": 5}).id == 5
    assert refused({"type": 1, "id": "a"}).code == "bad_message"
    err = refused({"type": "frobnicate", "id": "a"})
    assert (err.code, err.id) == ("bad_message", "a")
    assert "frobnicate" in err.message
    assert refused({"type": "Subscribe", "channel": "c"}).code == "bad_message"


def test_unknown_field_refused() -> None:
    err = refused({"type": "subscribe", "channel": "c", "snice": 4, "id": 9})
    assert (err.code, err.id) == ("bad_message", 9)
    assert "snice" in err.message
    assert refused({"type": "ping", "data": 1}).code == "bad_message"


@pytest.mark.parametrize(
    "mid", [True, False, 1.5, [], {}, "x" * 129, 10**128, -(10**128)]
)
def test_bad_id(mid: object) -> None:
    err = refused({"type": "ping", "id": mid})
    assert (err.code, err.id) == ("bad_message", None)


def test_id_limits() -> None:
    assert parse({"type": "ping", "id": "x" * 128}).id == "x" * 128
    assert parse({"type": "ping", "id": 10**128 - 1}).id == 10**128 - 1
    assert parse({"type": "ping", "id": -5}).id == -5


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe", "publish", "presence"])
@pytest.mark.parametrize(
    "channel", [None, 1, True, [], {}, "", "a\x00b", "tab\there", "del\x7f", "c1\x85", "x" * 201]
)
def test_bad_channel(kind: str, channel: object) -> None:
    obj = {"type": kind, "channel": channel, "id": "i"}
    if kind == "publish":
        obj["data"] = 1
    if channel is None:
        del obj["channel"]
    err = refused(obj)
    assert (err.code, err.id) == ("bad_channel", "i")


def test_channel_length_is_a_parameter() -> None:
    assert parse({"type": "subscribe", "channel": "x" * 10}, max_channel=10).channel == "x" * 10
    assert refused({"type": "subscribe", "channel": "x" * 11}, max_channel=10).code == "bad_channel"
    assert refused({"type": "subscribe", "channel": "x" * 10_000}).code == "bad_channel"



def test_lone_surrogate_channel_refused() -> None:
    with pytest.raises(MessageError) as info:
        parse_client_message('{"type":"subscribe","channel":"a\\ud800"}')
    assert info.value.code == "bad_channel"


@pytest.mark.parametrize("since", [-1, 1.0, 1.5, "1", True, False, [], {}, 2**63])
def test_bad_since(since: object) -> None:
    err = refused({"type": "subscribe", "channel": "c", "since": since, "id": 2})
    assert (err.code, err.id) == ("bad_since", 2)


def test_since_limits() -> None:
    assert parse({"type": "subscribe", "channel": "c", "since": 2**63 - 1}).since == 2**63 - 1


def test_publish_needs_data() -> None:
    assert refused({"type": "publish", "channel": "c"}).code == "bad_message"


@pytest.mark.parametrize("token", [None, "", 5, ["t"]])
def test_bad_refresh_token(token: object) -> None:
    obj = {"type": "refresh", "id": 1}
    if token is not None:
        obj["token"] = token
    assert refused(obj).code == "bad_token"


def test_huge_number_and_deep_nesting_are_message_errors() -> None:
    big = '{"type":"publish","channel":"c","data":' + "9" * 5000 + "}"
    with pytest.raises(MessageError):
        parse_client_message(big)
    deep = '{"type":"publish","channel":"c","data":' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(MessageError):
        parse_client_message(deep)


# -- any text: a message or our error, nothing else ---------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
message_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            ["subscribe", "unsubscribe", "publish", "refresh", "ping", "presence", "x"]
        )
        | json_values,
        "id": json_values,
        "channel": st.text(max_size=12) | json_values,
        "since": st.integers() | json_values,
        "data": json_values,
        "token": st.text(max_size=8) | json_values,
        "extra": json_values,
    },
)


def _total(text: str) -> None:
    try:
        msg = parse_client_message(text, max_channel=10)
    except (MessageError, InvalidJSON):
        return
    assert isinstance(msg, (Subscribe, Unsubscribe, Publish, Refresh, Ping, Presence))


@given(st.text())
def test_any_text_is_total(text: str) -> None:
    _total(text)


@given(message_like)
def test_any_message_like_object_is_total(obj: dict) -> None:
    text = json.dumps(obj)
    _total(text)
    # Fed with a prefix cut off, it must still be total.
    _total(text[: len(text) // 2])


@given(message_like)
def test_accepted_messages_are_what_was_sent(obj: dict) -> None:
    try:
        msg = parse_client_message(json.dumps(obj), max_channel=10)
    except MessageError as err:
        assert err.code in {"bad_message", "bad_channel", "bad_since", "bad_token"}
        return
    assert msg.id == obj.get("id")
    if isinstance(msg, (Subscribe, Unsubscribe, Publish, Presence)):
        assert msg.channel == obj["channel"]


# -- builders -----------------------------------------------------------------


def load(b: bytes) -> object:
    assert isinstance(b, bytes)
    b.decode("utf-8")  # valid UTF-8
    return json.loads(b)


def test_builders() -> None:
    assert load(replies.welcome("alice", 1700000000)) == {
        "type": "welcome", "sub": "alice", "expires_at": 1700000000,
    }
    assert replies.ack(1) == b'{"type":"ack","id":1}'
    assert replies.ack(None) == b'{"type":"ack"}'
    assert replies.ack(2, seq=9) == b'{"type":"ack","id":2,"seq":9}'
    assert replies.ack(2, recovered=None) == b'{"type":"ack","id":2}'
    assert load(replies.ack("a", recovered=False)) == {"type": "ack", "id": "a", "recovered": False}
    assert load(replies.error("q", "forbidden", "no")) == {
        "type": "error", "id": "q", "code": "forbidden", "message": "no",
    }
    assert load(replies.error(None, "bad_message", "m")) == {
        "type": "error", "code": "bad_message", "message": "m",
    }
    assert load(replies.token_expiring(5)) == {"type": "token_expiring", "expires_at": 5}
    assert load(replies.refreshed(6)) == {"type": "refreshed", "expires_at": 6}
    assert load(replies.refreshed(6, "r")) == {"type": "refreshed", "expires_at": 6, "id": "r"}
    assert replies.pong() == b'{"type":"pong"}'
    assert load(replies.pong(7)) == {"type": "pong", "id": 7}
    assert load(replies.join("c", "bob")) == {"type": "join", "channel": "c", "sub": "bob"}
    assert load(replies.leave("c", "bob")) == {"type": "leave", "channel": "c", "sub": "bob"}
    assert load(replies.presence("c", [("a", 2, "Alice"), ("b", 1, None)])) == {
        "type": "presence",
        "channel": "c",
        "members": [
            {"sub": "a", "connections": 2, "display_name": "Alice"},
            {"sub": "b", "connections": 1},
        ],
    }


def test_message_builder() -> None:
    raw = replies.message("chat:é", 3, "alice", {"text": "hé", "n": [1, None]})
    assert raw == '{"type":"message","channel":"chat:é","seq":3,"from":"alice","data":{"text":"hé","n":[1,null]}}'.encode()
    assert load(raw)["from"] == "alice"


def test_builders_survive_lone_surrogates() -> None:
    raw = replies.message("c", 1, "a\ud800", {"k\udfff": "v\ud83d"})
    assert load(raw) == {
        "type": "message", "channel": "c", "seq": 1, "from": "a\ud800", "data": {"k\udfff": "v\ud83d"},
    }
    assert load(replies.ack("\udc00"))["id"] == "\udc00"


def test_encode_json_refuses_nan_and_objects() -> None:
    with pytest.raises(ValueError):
        replies.encode_json(math.nan)
    with pytest.raises(TypeError):
        replies.encode_json({1, 2})


@given(json_values, st.text(), st.integers(min_value=1, max_value=2**63 - 1), st.text())
def test_message_roundtrip(data: object, channel: str, seq: int, sub: str) -> None:
    raw = replies.message(channel, seq, sub, data)
    assert load(raw) == {"type": "message", "channel": channel, "seq": seq, "from": sub, "data": data}
