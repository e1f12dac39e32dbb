"""The WebSocket message layer of SPEC.md §4, §5 and §5a, without I/O.

The session hands each complete text message to
:func:`parse_client_message` and gets back a frozen message, a
:class:`MessageError` (answer with an ``error`` and keep the connection), or
:class:`InvalidJSON` (close with 1007).  The builders of every server
message live in :mod:`realtime.protocol.replies`.

Like h11, this module never touches a socket and never raises anything but
its own errors for peer input: any text gives a message, a
``MessageError`` or ``InvalidJSON`` (a hypothesis test holds it to that).

Error codes
-----------

``code`` values are a stable contract: clients switch on them, so a code is
never renamed.  ``message`` is human-readable and may change.

==========================  =========================================================
code                        meaning
==========================  =========================================================
``bad_message``             not a JSON object; ``type`` missing, not a string or
                            unknown; a field of the wrong type; an unknown field;
                            a bad ``id``; a number too large to read
``bad_channel``             ``channel`` missing, not a string, empty, longer than
                            ``[websocket] max_channel_name``, or holding control
                            characters or lone surrogates
``bad_since``               ``since`` not an integer (``true`` is not one), negative,
                            or above 2**63 - 1
``bad_token``               ``refresh`` without a non-empty string ``token``
(hub) ``unknown_channel``   no ``[[channel]]`` pattern matches, and it is not the
                            caller's own ``user:<sub>``
(hub) ``forbidden``         the token lacks the channel's scope, or the channel is
                            another user's ``user:<sub>``
(hub) ``too_many_subscriptions``  over ``[websocket] max_subscriptions``
(hub) ``bad_data``          ``data`` cannot be encoded as JSON
(hub) ``presence_disabled`` ``presence`` on a channel without ``presence = true``
==========================  =========================================================

The codes marked (hub) come from :class:`realtime.hub.HubError`; they are
listed here so that one table holds every code a client can get from the
message core.  The session (``realtime.session.dispatch``) adds its own, such as
``invalid_token`` for a refused ``refresh``.

Rules the parser keeps (and why):

- Unknown fields are refused.  ``{"type":"subscribe","channel":"c",
  "snice":5}`` would otherwise subscribe without recovery and the typo
  would go unnoticed.
- ``id`` is a string of at most 128 characters, an integer of at most 128
  digits, or absent/``null``.  It is echoed back, so it must stay small;
  ``true``/``false`` and floats are refused because they do not round-trip
  as identifiers.
- ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259 §6), even
  though Python's decoder accepts them: they are :class:`InvalidJSON`.
- ``data`` may be any JSON value, including ``null``, but must be present
  in a ``publish``.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn, TypeAlias

import attrs

from realtime.protocol.close import CloseCode, ProtocolError
from realtime.protocol.replies import MessageId

__all__ = [
    "MAX_ID_CHARS",
    "MAX_SEQ",
    "Subscribe",
    "Unsubscribe",
    "Publish",
    "Refresh",
    "Ping",
    "Presence",
    "ClientMessage",
    "MessageError",
    "InvalidJSON",
    "parse_client_message",
    "channel_problem",
]

MAX_ID_CHARS = 128
MAX_SEQ = 2**63 - 1
_ID_INT_BOUND = 10**MAX_ID_CHARS


# --------------------------------------------------------------------------
# Client messages


@attrs.frozen
class Subscribe:
    id: MessageId
    channel: str
    since: int | None = None


@attrs.frozen
class Unsubscribe:
    id: MessageId
    channel: str


@attrs.frozen
class Publish:
    id: MessageId
    channel: str
    data: Any


@attrs.frozen
class Refresh:
    id: MessageId
    token: str = attrs.field(repr=False)  # a bearer credential: keep it out of logs


@attrs.frozen
class Ping:
    id: MessageId


@attrs.frozen
class Presence:
    id: MessageId
    channel: str


ClientMessage: TypeAlias = Subscribe | Unsubscribe | Publish | Refresh | Ping | Presence


class MessageError(Exception):
    """A well-formed JSON message we refuse; the connection stays open.

    The session answers ``error(self.id, self.code, self.message)``.
    ``id`` is the message's ``id`` when it could be read, else ``None``.
    """

    def __init__(self, code: str, message: str, id: MessageId = None) -> None:
        super().__init__(code, message, id)
        self.code = code
        self.message = message
        self.id = id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidJSON(ProtocolError, code=CloseCode.INVALID_DATA, reason="invalid JSON"):
    """The text is not JSON (RFC 8259).  The session closes with 1007.

    RFC 6455 §7.4.1: 1007 "indicates that an endpoint is terminating the
    connection because it has received data within a message that was not
    consistent with the type of the message".
    """


# --------------------------------------------------------------------------
# Parsing


def _reject_constant(name: str) -> NoReturn:
    raise InvalidJSON(f"{name} is not JSON")


_decode = json.JSONDecoder(parse_constant=_reject_constant).decode

# C0 controls, DEL, C1 controls, and lone surrogates (which cannot be sent
# back as UTF-8 without escaping and name nothing a person typed).
_BAD_CHANNEL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def channel_problem(channel: object, max_len: int) -> str | None:
    """Why ``channel`` is not an acceptable channel name, or ``None``.

    Shared by the parser and the hub, so ``/api/publish`` (which does not
    go through the parser) refuses the same names.
    """
    if not isinstance(channel, str):
        return "channel must be a string"
    if not channel:
        return "channel must not be empty"
    if len(channel) > max_len:
        return f"channel longer than {max_len} characters"
    if _BAD_CHANNEL_CHARS.search(channel):
        return "channel holds control characters"
    return None


_FIELDS: dict[str, frozenset[str]] = {
    "subscribe": frozenset({"type", "id", "channel", "since"}),
    "unsubscribe": frozenset({"type", "id", "channel"}),
    "publish": frozenset({"type", "id", "channel", "data"}),
    "refresh": frozenset({"type", "id", "token"}),
    "ping": frozenset({"type", "id"}),
    "presence": frozenset({"type", "id", "channel"}),
}


def _read_id(obj: dict[str, Any]) -> MessageId:
    mid = obj.get("id")
    if mid is None:
        return None
    if isinstance(mid, str):
        if len(mid) <= MAX_ID_CHARS:
            return mid
    elif isinstance(mid, int) and not isinstance(mid, bool):
        if -_ID_INT_BOUND < mid < _ID_INT_BOUND:
            return mid
    raise MessageError(
        "bad_message",
        f"id must be a string or integer of at most {MAX_ID_CHARS} characters",
        None,
    )


def _read_channel(obj: dict[str, Any], mid: MessageId, max_channel: int) -> str:
    if "channel" not in obj:
        raise MessageError("bad_channel", "channel is missing", mid)
    channel = obj["channel"]
    problem = channel_problem(channel, max_channel)
    if problem is not None:
        raise MessageError("bad_channel", problem, mid)
    return channel  # type: ignore[no-any-return]


def _read_since(obj: dict[str, Any], mid: MessageId) -> int | None:
    since = obj.get("since")
    if since is None:
        return None
    if isinstance(since, bool) or not isinstance(since, int):
        raise MessageError("bad_since", "since must be a non-negative integer", mid)
    if since < 0 or since > MAX_SEQ:
        raise MessageError("bad_since", "since must be a non-negative integer", mid)
    return since


def parse_client_message(text: str, *, max_channel: int = 200) -> ClientMessage:
    """Read one client text message (SPEC §4).

    Args:
        text: the whole message, already decoded from UTF-8 by the frame parser.
        max_channel: ``[websocket] max_channel_name``.

    Returns:
        A frozen :data:`ClientMessage`.

    Raises:
        InvalidJSON: the text is not JSON; close with 1007.
        MessageError: JSON we refuse; answer with an ``error`` and go on.
    """
    try:
        obj = _decode(text)
    except InvalidJSON:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"invalid JSON at position {exc.pos}") from None
    except ValueError:
        # Valid JSON that Python will not read: an integer of more than
        # sys.get_int_max_str_digits() digits.
        raise MessageError("bad_message", "number too large", None) from None
    except RecursionError:
        raise MessageError("bad_message", "nested too deeply", None) from None
    if not isinstance(obj, dict):
        raise MessageError("bad_message", "a message must be a JSON object", None)

    mid = _read_id(obj)
    kind = obj.get("type")
    if kind is None:
        raise MessageError("bad_message", "type is missing", mid)
    if not isinstance(kind, str):
        raise MessageError("bad_message", "type must be a string", mid)
    allowed = _FIELDS.get(kind)
    if allowed is None:
        raise MessageError("bad_message", f"unknown type {kind[:64]!r}", mid)
    if len(obj) > len(allowed) or not allowed.issuperset(obj):
        extra = sorted(k for k in obj if k not in allowed)
        raise MessageError(
            "bad_message", f"unknown field {extra[0][:64]!r} in {kind}", mid
        )

    if kind == "publish":
        channel = _read_channel(obj, mid, max_channel)
        if "data" not in obj:
            raise MessageError("bad_message", "publish needs data", mid)
        return Publish(mid, channel, obj["data"])
    if kind == "subscribe":
        channel = _read_channel(obj, mid, max_channel)
        return Subscribe(mid, channel, _read_since(obj, mid))
    if kind == "unsubscribe":
        return Unsubscribe(mid, _read_channel(obj, mid, max_channel))
    if kind == "ping":
        return Ping(mid)
    if kind == "presence":
        return Presence(mid, _read_channel(obj, mid, max_channel))
    # refresh
    token = obj.get("token")
    if not isinstance(token, str) or not token:
        raise MessageError("bad_token", "refresh needs a token string", mid)
    return Refresh(mid, token)

