"""What the server API (SPEC §11) asks of one node's hub: connections by
selector, unsubscribing a ``sub`` from a channel, the channels with
subscribers, history, and requests to the other nodes.

Synchronous over the hub's indexes except :func:`ask_others` and
:func:`history_async`, which go through a remote broker.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from realtime.hub.broker import BrokerUnavailable
from realtime.hub.hub import Hub
from realtime.hub.index import Connection
from realtime.protocol.frames import encode_text_frame
from realtime.protocol.replies import encode_json

__all__ = ["ask_others", "share_cutoff", "channel_counts", "frame_payload", "history", "history_async", "select", "unsubscribe_sub"]


def select(
    hub: Hub,
    *,
    sub: str | None = None,
    client_id: str | None = None,
    conn_id: int | None = None,
    channel: str | None = None,
) -> list[Connection]:
    """Live connections matching every selector given, from the smallest index."""
    if conn_id is not None:
        one = hub.connections.get(conn_id)
        found: tuple[Connection, ...] = () if one is None else (one,)
    elif sub is not None:
        found = hub.connections.by_sub(sub)
    elif client_id is not None:
        found = hub.connections.by_client(client_id)
    else:
        found = hub.connections.all()
    out = []
    for conn in found:
        if sub is not None and conn.sub != sub:
            continue
        if client_id is not None and conn.client_id != client_id:
            continue
        if channel is not None and channel not in hub.tables.channels_of(conn):
            continue
        out.append(conn)
    out.sort(key=lambda c: c.conn_id)
    return out


def unsubscribe_sub(hub: Hub, sub: str, channel: str) -> int:
    """Take every connection of ``sub`` here off ``channel``, telling each
    with ``{"type":"unsubscribed","channel":C}``; returns how many."""
    frame = encode_text_frame(encode_json({"type": "unsubscribed", "channel": channel}))
    done = 0
    for conn in hub.connections.by_sub(sub):
        if hub.unsubscribe(conn, channel):
            conn.offer(frame)
            done += 1
    return done


def channel_counts(hub: Hub, pattern: str) -> dict[str, tuple[int, int]]:
    """Channels with local subscribers matching ``pattern`` (fnmatch, case
    matters): ``{channel: (subscribers, newest seq seen here)}``."""
    out = {}
    for channel in hub.channels():
        if fnmatch.fnmatchcase(channel, pattern):
            out[channel] = (hub.subscriber_count(channel), hub.broker.last_seq(channel))
    return out


def frame_payload(frame: bytes) -> bytes:
    """The payload of one unmasked server frame (RFC 6455 §5.2 lengths)."""
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    return frame[start:]


def _message(payload: bytes) -> dict[str, Any]:
    kept = json.loads(payload)
    return {"seq": kept["seq"], "from": kept["from"], "data": kept["data"]}


def history(hub: Hub, channel: str, since: int, limit: int) -> tuple[list[dict[str, Any]], bool, int]:
    """Kept messages after ``since`` (at most ``limit``, oldest first), whether
    they are every message after ``since``, and the channel's top ``seq``
    (in-process broker)."""
    broker = hub.broker
    assert not broker.remote, "a remote broker reads history through history_async"
    replay = broker.replay(channel, since)
    messages = [_message(frame_payload(f)) for f in replay.frames[:limit]]
    return messages, replay.recovered, replay.last_seq


async def history_async(hub: Hub, channel: str, since: int, limit: int) -> tuple[list[dict[str, Any]], bool, int]:
    """:func:`history` through a remote broker (raises ``BrokerUnavailable``)."""
    broker = hub.remote_broker
    assert broker is not None, "history_async needs a remote broker"
    kept, top = await broker.history(channel, since, limit)
    messages = [_message(body) for body in kept]
    first = messages[0]["seq"] if messages else top + 1
    recovered = since >= top or first == since + 1
    return messages, recovered, top


async def share_cutoff(hub: Hub, sub: str, client_id: str, issued_before: float, keep_until: float) -> bool:
    """Keep a cut-off in the broker for nodes away now; False if it could not."""
    broker = hub.remote_broker
    if broker is None:
        return True
    try:
        await broker.share_cutoff(sub, client_id, issued_before, keep_until)
    except BrokerUnavailable:
        return False
    return True


async def ask_others(hub: Hub, op: str, args: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """Run ``op`` on every other node; their answers and whether some node
    did not answer in time (``partial``).  In process there are no others."""
    broker = hub.remote_broker
    if broker is None:
        return [], False
    try:
        return await broker.ask(op, args)
    except BrokerUnavailable:
        return [], True
