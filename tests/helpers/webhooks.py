"""A webhook receiver for the tests: a small real HTTP/1.1 server (trio +
h11) on 127.0.0.1:0 that checks every signature, records what it got,
and answers what the test says (a status, or never)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import attrs
import h11
import trio

from realtime.api.webhooks import verify


@attrs.define(eq=False)
class Received:
    event_id: str
    signature: str
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@attrs.define(eq=False)
class Receiver:
    secret: bytes
    # What to answer each request: a status, or None to never answer (a hung receiver).
    answer: Callable[[Received], int | None] = lambda r: 200
    got: list[Received] = attrs.field(factory=list)
    bad_signatures: int = 0
    port: int = 0
    _changed: trio.Event = attrs.field(factory=trio.Event)
    _listener: Any = None
    _scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self, nursery: trio.Nursery) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self._listener = listeners[0]
        self.port = self._listener.socket.getsockname()[1]
        nursery.start_soon(self._serve)

    async def _serve(self) -> None:
        with self._scope:
            await trio.serve_listeners(self._handle, [self._listener])

    def stop(self) -> None:
        """Stop listening and drop every connection (a killed receiver)."""
        self._scope.cancel()

    async def wait_for(self, count: int, timeout: float = 20) -> list[Received]:
        with trio.fail_after(timeout):
            while len(self.got) < count:
                await self._changed.wait()
        return self.got

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.Request):
                    headers = {k.decode(): v.decode() for k, v in event.headers}
                    body = b""
                    while True:
                        nxt = conn.next_event()
                        if nxt is h11.NEED_DATA:
                            conn.receive_data(await stream.receive_some(65536))
                        elif isinstance(nxt, h11.Data):
                            body += nxt.data
                        elif isinstance(nxt, h11.EndOfMessage):
                            break
                    got = Received(headers.get("realtime-event-id", ""), headers.get("realtime-signature", ""), body)
                    if not verify(self.secret, got.signature, body, time.time()) or \
                            headers.get("content-type") != "application/json" or got.event.get("id") != got.event_id:
                        self.bad_signatures += 1
                    self.got.append(got)
                    self._changed.set()
                    self._changed = trio.Event()
                    status = self.answer(got)
                    if status is None:
                        await trio.sleep_forever()
                    await stream.send_all(conn.send(h11.Response(status_code=status, headers=[("content-length", "0")])))
                    await stream.send_all(conn.send(h11.EndOfMessage()))
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            await stream.aclose()
