"""The end of a WebSocket session: our close frame, the wait for the peer's
(RFC 6455 §7), the socket's close, then the close counter and the
``disconnect`` event.

Apart from :mod:`realtime.net.websocket` because it runs once per
connection, after the reader loop has returned, and reads only the
session's outcome (its close code, the peer's close frame, the reader's
state) through :class:`Ending`, none of the running state (cancel scopes,
writer task, timers).  Nothing on the per-message paths calls it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import trio

from realtime.net.transport import Transport
from realtime.net.transport_errors import BacklogOverflow, TransportClosed
from realtime.protocol.close import CloseCode, CloseError
from realtime.protocol.ws_reader import CloseReceived, ConnectionState, WsReader

if TYPE_CHECKING:
    from realtime.api.app import App

log = logging.getLogger("realtime.ws")

CLOSE_WAIT = 2.0  # how long we wait for the peer's close frame after ours
# While closing, try to send this often even without a writable event: the
# kernel reports a socket writable only once a third of its (autotuned,
# up to 4 MiB) buffer is free, which a slow reader may take many seconds
# to read, though a small close frame would fit much sooner.
CLOSE_RETRY = 0.05
#: Frames handled between two checkpoints: by the session's reader
#: (net/websocket.py) and here, while a peer still floods before its close.
EVENTS_PER_CHECKPOINT = 64


class Ending(Protocol):
    """What closing reads of a session (:class:`realtime.net.websocket.Session`).

    A protocol rather than the session class itself: the session imports
    this module, and this module must not import the session back.
    """

    @property
    def conn_id(self) -> int: ...

    @property
    def sub(self) -> str: ...

    @property
    def client_id(self) -> str: ...

    @property
    def transport(self) -> Transport: ...

    @property
    def reader(self) -> WsReader: ...

    @property
    def state(self) -> "App": ...

    @property
    def echo(self) -> bool: ...

    @property
    def close_code(self) -> int | None: ...

    @property
    def close_reason(self) -> str: ...

    @property
    def peer_close(self) -> CloseReceived | None: ...


async def close_session(session: Ending) -> None:
    """Close the session's socket with its close code (1000 when none was
    set), shielded: the one ``finally`` of ``Session.run`` calls it, often
    from a cancelled scope."""
    code = session.close_code if session.close_code is not None else CloseCode.NORMAL
    transport = session.transport
    with trio.CancelScope(shield=True):
        try:
            if code != CloseCode.ABORT and not transport.closed:
                reply = session.peer_close
                if reply is not None and code == CloseCode.NORMAL:
                    code = reply.code if reply.code not in (CloseCode.NO_STATUS, CloseCode.ABORT) else CloseCode.NORMAL
                if code == CloseCode.SLOW_CONSUMER:
                    # Frames not started yet are dropped: a slow reader
                    # reads the 4009 after the wire's tail, not after a
                    # whole backlog it cannot read in time.
                    transport.discard_queued()
                if session.reader.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                    # Not charged: a slow consumer's queue is past its limit.
                    transport.write(session.reader.close_frame(code, session.close_reason), charged=False)
                # The close handshake gets its usual time once our close
                # frame is with the kernel, however long that took.
                with trio.move_on_after(CLOSE_WAIT) as sending:
                    await transport.drain(retry_every=CLOSE_RETRY)
                if not sending.cancelled_caught:
                    with trio.move_on_after(CLOSE_WAIT):
                        if session.reader.failed:
                            # The reader stops at a broken rule and would never
                            # see the peer's close: RFC 6455 §7.1.7 "Fail the
                            # WebSocket Connection" — our close is out, so
                            # half-close and drop what still comes.
                            await transport.linger_close(CLOSE_WAIT)
                        elif session.reader.state is ConnectionState.LOCAL_CLOSING:
                            await _await_peer_close(session)
        except (TransportClosed, BacklogOverflow):
            pass
        transport.close()
    session.state.metrics.closes[int(code)] += 1
    if not session.echo:
        session.state.emit("disconnect", {"sub": session.sub, "client_id": session.client_id,
                                          "conn_id": session.conn_id, "code": int(code)})
    log.debug("ws %d closed code=%s reason=%s", session.conn_id, code, session.close_reason)


async def _await_peer_close(session: Ending) -> None:
    reader = session.reader
    max_bytes = session.state.settings.websocket.max_message_bytes
    handled = 0
    while reader.reading:
        data = await session.transport.receive_some()
        if not data:
            return
        reader.receive_data(data)
        while True:
            try:
                event = reader.next_event(max_bytes)
            except CloseError:
                return
            if event is None or isinstance(event, CloseReceived):
                break
            handled += 1
            if handled % EVENTS_PER_CHECKPOINT == 0:  # a peer still flooding (see Session._reader)
                await trio.lowlevel.checkpoint()
