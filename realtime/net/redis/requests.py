"""Server API requests across nodes (SPEC §11: "With a broker they act on
every node").

A node asks by publishing ``{"id","from","op","args"}`` on ``rt:ctl``,
which every node's pub/sub connection is subscribed to; each other node
runs the operation (``on_control``, set by the server) and publishes its
answer ``{"id","node","answer"}`` on ``rt:ctl:<asker>``.  The asker waits
at most ``timeout`` seconds for an answer from every other node: as many
as the ``PUBLISH`` reached (less itself) and every node registered in
``rt:nodes``.  A node that does not answer in time (hung, or dead but not
reaped yet) makes the result ``partial``; nothing waits longer.

Requests are handled off the pub/sub reader, each in a task of its own
(at most ``MAX_HANDLING`` at once, more are dropped and logged), so a
slow operation never holds up message delivery.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from realtime.hub.broker import BrokerUnavailable
from realtime.net.redis.state import REDIS_ERRORS, BrokerState, log

__all__ = ["CTL_CHANNEL", "Requests", "reply_channel"]

CTL_CHANNEL = b"rt:ctl"
NODES = b"rt:nodes"
MAX_HANDLING = 64
ASK_TIMEOUT = 2.0

OnControl = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def reply_channel(node: str) -> bytes:
    return CTL_CHANNEL + b":" + node.encode("ascii")


class _Pending:
    __slots__ = ("answers", "wake")

    def __init__(self) -> None:
        self.answers: dict[str, dict[str, Any]] = {}
        self.wake = trio.Event()


class Requests:
    """Asks the other nodes and answers them (see the module docstring)."""

    def __init__(self, state: BrokerState, timeout: float = ASK_TIMEOUT) -> None:
        self.state = state
        self.timeout = timeout
        self.on_control: OnControl | None = None
        self._pending: dict[str, _Pending] = {}
        self._inbox_send, self._inbox = trio.open_memory_channel[bytes](MAX_HANDLING)

    # -- from the pub/sub reader (sync) -------------------------------------------

    def on_message(self, key: bytes, data: bytes) -> None:
        """A request for this node, or an answer to one of its own."""
        if key == CTL_CHANNEL:
            try:
                self._inbox_send.send_nowait(data)
            except trio.WouldBlock:
                log.warning("broker: too many server API requests at once; one dropped")
            return
        try:
            reply = json.loads(data)
            pending = self._pending.get(reply["id"])
            node = str(reply["node"])
            answer = reply["answer"]
        except (ValueError, KeyError, TypeError):
            log.warning("broker: malformed server API answer ignored")
            return
        if pending is not None and isinstance(answer, dict):
            pending.answers[node] = answer
            pending.wake.set()

    # -- answering, in the link's nursery -------------------------------------------

    async def serve(self) -> None:
        """Handle requests from other nodes, each in a task of its own."""
        async with trio.open_nursery() as nursery:
            async for data in self._inbox:
                nursery.start_soon(self._answer, data)

    async def _answer(self, data: bytes) -> None:
        state = self.state
        try:
            request = json.loads(data)
            rid, asker, op, args = request["id"], request["from"], request["op"], request["args"]
        except (ValueError, KeyError, TypeError):
            log.warning("broker: malformed server API request ignored")
            return
        if asker == state.node or self.on_control is None or not isinstance(args, dict):
            return
        with trio.move_on_after(self.timeout):
            try:
                answer = await self.on_control(op, args)
            except Exception:  # noqa: BLE001 - one bad request must not end the link
                log.exception("broker: server API request %r failed", op)
                return
            try:
                await state.live_client().publish(
                    reply_channel(asker), json.dumps({"id": rid, "node": state.node, "answer": answer}))
            except (BrokerUnavailable, *REDIS_ERRORS) as exc:
                log.warning("broker: could not answer a server API request: %s", exc)

    # -- asking ---------------------------------------------------------------------

    async def ask(self, op: str, args: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """Run ``op`` on every other node; (answers, partial)."""
        state = self.state
        client = state.live_client()
        rid = secrets.token_hex(8)
        pending = self._pending[rid] = _Pending()
        try:
            try:
                registered = {n.decode("ascii", "replace") for n in await client.zrange(NODES, 0, -1)}
                reached = await client.publish(
                    CTL_CHANNEL, json.dumps({"id": rid, "from": state.node, "op": op, "args": args}))
            except REDIS_ERRORS as exc:
                raise BrokerUnavailable(str(exc)) from None
            others = registered - {state.node}
            expected = max(int(reached) - 1, 0)

            def complete() -> bool:
                return len(pending.answers) >= expected and others <= pending.answers.keys()

            with trio.move_on_after(self.timeout):
                while not complete():
                    await pending.wake.wait()
                    pending.wake = trio.Event()
            return list(pending.answers.values()), not complete()
        finally:
            del self._pending[rid]
