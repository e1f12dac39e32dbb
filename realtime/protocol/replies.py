"""The server messages of SPEC.md §4, §5 and §5a, without I/O.

Each builder returns the UTF-8 JSON of one server message; the session or
the hub wraps it in a frame (:mod:`realtime.protocol.frames`).  Reading client
messages is :mod:`realtime.protocol.messages`, which re-exports every public name here.

Replies to an ``id``: ``ack`` (``subscribe``, ``unsubscribe``,
``publish`` with ``seq``), or the reply that carries the ``id`` itself
(``pong``, ``refreshed``, ``presence``), or ``error``.  A ``subscribe``
with ``since`` gets an ``ack`` with ``recovered`` (see :mod:`realtime.hub`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeAlias

__all__ = [
    "MessageId",
    "encode_json",
    "welcome",
    "ack",
    "error",
    "message",
    "message_from_json",
    "token_expiring",
    "refreshed",
    "pong",
    "presence",
    "join",
    "leave",
]

#: The ``id`` a client message may carry and its reply echoes.  It lives
#: here, with the replies, so that :mod:`realtime.protocol.messages` (which
#: re-exports both) is the only one of the two that imports the other.
MessageId: TypeAlias = str | int | None

_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
).encode


def encode_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as every server message is sent.

    ``ensure_ascii=False`` keeps non-Latin text at its UTF-8 size instead of
    six bytes per ``\\uXXXX``.  A lone surrogate (legal inside a JSON
    string escape, but not encodable as UTF-8) can only sit inside a string
    literal, so ``backslashreplace`` turns it into exactly the JSON escape
    ``\\udXXX``: the output is always valid UTF-8 and valid JSON, and the
    builders below never fail on odd text from a token or a peer.

    Raises:
        TypeError: ``obj`` holds something JSON cannot represent.
        ValueError: ``obj`` holds NaN or an infinity, or nests too deeply
            (``RecursionError`` is a ``RuntimeError``; callers that take
            arbitrary data catch it too).
    """
    return _encoder(obj).encode("utf-8", "backslashreplace")


def _with_id(mid: MessageId, body: dict[str, Any]) -> bytes:
    if mid is not None:
        body["id"] = mid
    return encode_json(body)


def welcome(sub: str, expires_at: int | float) -> bytes:
    """``{"type":"welcome","sub":...,"expires_at":EPOCH}`` after the upgrade."""
    return encode_json({"type": "welcome", "sub": sub, "expires_at": expires_at})


def ack(mid: MessageId, **extra: Any) -> bytes:
    """``{"type":"ack","id":...}``; ``id`` is left out when ``None``.

    ``extra`` adds fields whose value is not ``None``, after ``id``:
    ``recovered`` in the answer to a ``subscribe`` with ``since`` (see
    :mod:`realtime.hub`, "Recovery"), ``seq`` in the answer to a
    ``publish``.
    """
    body: dict[str, Any] = {"type": "ack"}
    if mid is not None:
        body["id"] = mid
    for key, value in extra.items():
        if value is not None:
            body[key] = value
    return encode_json(body)


def error(mid: MessageId, code: str, message: str) -> bytes:
    """``{"type":"error","id":...,"code":...,"message":...}``."""
    body: dict[str, Any] = {"type": "error"}
    if mid is not None:
        body["id"] = mid
    body["code"] = code
    body["message"] = message
    return encode_json(body)


def message(channel: str, seq: int, from_sub: str, data: Any) -> bytes:
    """``{"type":"message","channel":C,"seq":N,"from":SUB,"data":ANY}``.

    Raises what :func:`encode_json` raises for bad ``data``.
    """
    return message_from_json(channel, seq, from_sub, encode_json(data))


def message_from_json(channel: str, seq: int, from_sub: str, data_json: bytes) -> bytes:
    """:func:`message` with ``data`` already encoded by :func:`encode_json`.

    The hub encodes ``data`` once, before a ``seq`` exists (the broker
    assigns it), and a networked broker carries the encoded ``data`` between
    nodes; this splices it in without decoding it again.
    """
    return b"".join(
        (
            b'{"type":"message","channel":',
            encode_json(channel),
            b',"seq":',
            str(seq).encode("ascii"),
            b',"from":',
            encode_json(from_sub),
            b',"data":',
            data_json,
            b"}",
        )
    )


def token_expiring(expires_at: int | float) -> bytes:
    """``{"type":"token_expiring","expires_at":EPOCH}``."""
    return encode_json({"type": "token_expiring", "expires_at": expires_at})


def refreshed(expires_at: int | float, mid: MessageId = None) -> bytes:
    """``{"type":"refreshed","expires_at":EPOCH}`` after a good ``refresh``.

    It carries the ``refresh``'s ``id`` (when there was one) and stands in
    for its ``ack``.
    """
    return _with_id(mid, {"type": "refreshed", "expires_at": expires_at})


def pong(mid: MessageId = None) -> bytes:
    """``{"type":"pong"}``, with the ``ping``'s ``id`` when it had one."""
    return _with_id(mid, {"type": "pong"})


def presence(
    channel: str,
    members: Iterable[tuple[str, int, str | None]],
    mid: MessageId = None,
    truncated: bool = False,
) -> bytes:
    """SPEC §5a: ``{"type":"presence","channel":C,"members":[...]}``.

    Args:
        members: ``(sub, connections, display_name)``; ``display_name`` is
            left out of the member object when ``None``.
        truncated: the list was cut at ``[websocket] max_presence_members``;
            adds ``"truncated": true``.
    """
    out = []
    for sub, count, display_name in members:
        member: dict[str, Any] = {"sub": sub, "connections": count}
        if display_name is not None:
            member["display_name"] = display_name
        out.append(member)
    body: dict[str, Any] = {"type": "presence", "channel": channel, "members": out}
    if truncated:
        body["truncated"] = True
    return _with_id(mid, body)


def join(channel: str, sub: str) -> bytes:
    """``{"type":"join","channel":C,"sub":S}``: ``sub``'s first connection came."""
    return encode_json({"type": "join", "channel": channel, "sub": sub})


def leave(channel: str, sub: str) -> bytes:
    """``{"type":"leave","channel":C,"sub":S}``: ``sub``'s last connection left."""
    return encode_json({"type": "leave", "channel": channel, "sub": sub})
