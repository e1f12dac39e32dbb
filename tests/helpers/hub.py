"""Stand-ins the hub tests share: a fake session that decodes what it is
offered like a client, the rules, and small helpers."""

from __future__ import annotations

import itertools
import json
from typing import Any

from wsproto.frame_protocol import FrameProtocol, Opcode

from realtime.config.settings import ChannelRule, WebSocketSettings
from realtime.hub import Hub
from realtime.hub.broker import BrokerUnavailable, Replay


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
    """A hub; leaves go out at once unless ``join_leave_debounce`` is given
    (the debounce has its own tests, with a clock)."""
    ws.setdefault("join_leave_debounce", 0.0)
    return Hub(rules, WebSocketSettings(**ws))


def msg(channel: str, seq: int, data: Any, sub: str = "alice") -> dict[str, Any]:
    return {"type": "message", "channel": channel, "seq": seq, "from": sub, "data": data}


def publish_n(hub: Hub, channel: str, n: int) -> None:
    for i in range(n):
        hub.publish(channel, i, from_sub="p", scopes=frozenset({"chat:write"}))


def seqs(conn: FakeConn) -> list[int]:
    return [m["seq"] for m in conn.take()]


class FakeRemote:
    """A remote broker stand-in: records what the hub tells it."""

    remote = True

    def __init__(self) -> None:
        self.hub: Hub | None = None
        self.reports: list[tuple[str, str]] = []
        self.watched: set[str] = set()
        self.holds: dict[str, int] = {}
        self.down = False
        self.early: list[tuple[str, str, int, int]] = []

    def attach(self, hub: Hub) -> None:
        self.hub = hub

    def report(self, channel: str, sub: str) -> None:
        self.reports.append((channel, sub))

    async def report_now(self, channel: str, sub: str, count: int, total: int) -> None:
        if self.down:
            raise BrokerUnavailable("down")
        self.early.append((channel, sub, count, total))

    def watch(self, channel: str) -> None:
        self.watched.add(channel)

    def unwatch(self, channel: str) -> None:
        self.watched.discard(channel)

    def hold(self, channel: str) -> None:
        self.holds[channel] = self.holds.get(channel, 0) + 1

    def release(self, channel: str) -> None:
        self.holds[channel] -= 1

    def last_seq(self, channel: str) -> int:
        return 7

    def retain(self, keep_for: Any) -> None:
        pass

    async def prepare(self, channel: str, since: int | None) -> Replay:
        if self.down:
            raise BrokerUnavailable("down")
        return Replay([], True, 7)

    async def publish_async(self, channel: str, from_sub: str, data_json: bytes, keep: int) -> tuple[int, int]:
        if self.down:
            raise BrokerUnavailable("down")
        return 8, 3

    async def presence(self, channel: str, limit: int) -> tuple[list[tuple[str, int]], bool]:
        return [("x", 1)], False


def members(protocol: type) -> set[str]:
    """The names a Protocol declares (methods and annotated attributes),
    its bases' included (``typing.get_protocol_members`` is 3.13+)."""
    names: set[str] = set()
    for cls in protocol.__mro__:
        if cls in (object,) or cls.__name__ in ("Protocol", "Generic"):
            continue
        names.update(n for n in vars(cls) if not n.startswith("_"))
        names.update(getattr(cls, "__annotations__", {}))
    return names
