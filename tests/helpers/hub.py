"""Stand-ins the hub tests share: a fake session that decodes what it is
offered like a client, the rules, and small helpers."""

from __future__ import annotations

import itertools
import json
from typing import Any

from wsproto.frame_protocol import FrameProtocol, Opcode

from realtime.config.settings import ChannelRule, WebSocketSettings
from realtime.hub import Hub


_ids = itertools.count(1)


class FakeConn:
    """A session stand-in: records offered frames, decodes them like a client."""

    def __init__(
        self,
        sub: str = "alice",
        scopes: tuple[str, ...] = ("chat:read", "chat:write"),
        client_id: str = "app",
        kid: str = "k1",
        jti: str | None = None,
    ) -> None:
        self.conn_id = next(_ids)
        self.sub = sub
        self.client_id = client_id
        self.kid = kid
        self.jti = jti or f"jti-{self.conn_id}"
        self.scopes = frozenset(scopes)
        self.frames: list[bytes] = []
        self.withdrawn: tuple[int, str] | None = None
        self._parser = FrameProtocol(client=True, extensions=[])
        self._decoded: list[dict[str, Any]] = []

    def offer(self, frame: bytes) -> None:
        self.frames.append(frame)

    def withdraw(self, code: int, reason: str) -> None:
        self.withdrawn = (code, reason)

    def received(self) -> list[dict[str, Any]]:
        """Every JSON message offered so far, parsed as a client would."""
        pending, self.frames = self.frames, []
        for frame in pending:
            self._parser.receive_bytes(frame)
        for f in self._parser.received_frames():
            assert f.opcode is Opcode.TEXT and f.message_finished
            self._decoded.append(json.loads(f.payload))
        return self._decoded

    def take(self) -> list[dict[str, Any]]:
        out = list(self.received())
        self._decoded.clear()
        return out


def replay_into(conn: FakeConn, result: Any) -> None:
    """What the session does with a SubscribeResult."""
    for frame in result.replay:
        conn.offer(frame)


RULES = (
    ChannelRule("chat:*", "chat:read", "chat:write", history=5),
    ChannelRule("open:*", None, None, history=0),
    ChannelRule("room:*", "chat:read", "chat:write", history=10, presence=True, join_leave=True),
    ChannelRule("user:*", None, "notify", history=3),
)


def make_hub(rules: tuple[ChannelRule, ...] = RULES, **ws: Any) -> Hub:
    return Hub(rules, WebSocketSettings(**ws))


def msg(channel: str, seq: int, data: Any, sub: str = "alice") -> dict[str, Any]:
    return {"type": "message", "channel": channel, "seq": seq, "from": sub, "data": data}


def publish_n(hub: Hub, channel: str, n: int) -> None:
    for i in range(n):
        hub.publish(channel, i, from_sub="p", scopes=frozenset({"chat:write"}))


def seqs(conn: FakeConn) -> list[int]:
    return [m["seq"] for m in conn.take()]
