"""The byte pipe under every connection: a non-blocking socket, optionally
wrapped in TLS through the record layer of :mod:`realtime.net.tls_records`
(``ssl.SSLObject`` + two ``MemoryBIO``s).

Why not ``trio.SocketStream``/``trio.SSLStream``: they make every write an
``await``.  Fan-out must write to a thousand sockets without a scheduler
trip each (DESIGN.md §3–5), so :meth:`Transport.write` is synchronous: it
tries the syscall at once (as trio's own ``_try_sync`` does) and only
when the kernel buffer is full does the rest go to a backlog that a writer
task drains with ``await``.  While a backlog exists new bytes join it, so
order holds.

Once its owner calls :meth:`Transport.coalesce`, a write is kept until the
end of the scheduling pass and written with the others of that pass as
one chunk (:mod:`realtime.net.cork`): order is the order of the writes,
whoever made them.

Reads follow trio's model: try ``recv``; wait for readability only on
``BlockingIOError``.
"""

from __future__ import annotations

import socket
import ssl
from collections import deque
from typing import Callable, Iterator

import trio

from realtime.net.cork import PassCork
from realtime.net.tls_records import TlsRecordLayer
from realtime.net.transport_errors import BacklogOverflow, TransportClosed
from realtime.protocol.close import CloseError

__all__ = ["RECV_SIZE", "Transport"]

RECV_SIZE = 65536


class Transport:
    """One accepted connection.

    Args:
        sock: an accepted, connected stdlib socket; it is made non-blocking.
        ssl_context: when given, the connection is TLS (call :meth:`handshake`
            first).
        max_backlog: bytes of charged writes allowed to wait for a slow
            reader; past it :meth:`write` raises :class:`BacklogOverflow`.

    What waits for the kernel is kept in two parts, so a slow consumer can
    still be told why it is dropped:

    - the *wire*: bytes already committed to the stream, never dropped: the
      unsent tail of a write the kernel half took, and on TLS every byte
      already encrypted (the record stream cannot skip a record);
    - the *queue*: whole writes (frames) not started yet, kept as plaintext
      and encrypted only when the wire is empty.  :meth:`discard_queued`
      drops them and the stream stays valid.
    """

    # Thousands live at once: slots instead of a per-instance dict.
    __slots__ = ("sock", "max_backlog", "closed", "_wire", "_wire_bytes", "_queued", "_queued_bytes",
                 "_charged", "on_backlog", "_tls", "_cork", "_held", "on_failure")

    def __init__(
        self,
        sock: socket.socket,
        ssl_context: ssl.SSLContext | None = None,
        max_backlog: int = 1 << 20,
    ) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.sock = sock
        self.max_backlog = max_backlog
        self.closed = False
        # Created on the first short write: most sockets never need them, and
        # an empty deque is ~0.7 KB per idle connection.
        self._wire: deque[memoryview] | None = None
        self._wire_bytes = 0
        self._queued: deque[tuple[bytes, bool]] | None = None  # (data, charged)
        self._queued_bytes = 0
        self._charged = 0  # bytes of charged writes in the queue
        # Called (synchronously) when a backlog first forms, so the owner can
        # start its writer task: no task exists while the socket keeps up.
        self.on_backlog: Callable[[], None] | None = None
        # Write coalescing (see coalesce): the run's cork, the writes kept in
        # this pass as (data, charged), and whom to tell when writing them fails.
        self._cork: PassCork | None = None
        self._held: list[tuple[bytes, bool]] | None = None
        self.on_failure: Callable[[int, str], None] | None = None
        # The TLS record layer, for TLS connections only.
        self._tls = TlsRecordLayer(ssl_context) if ssl_context is not None else None

    # -- inspection -------------------------------------------------------
    @property
    def is_tls(self) -> bool:
        return self._tls is not None

    @property
    def backlog_bytes(self) -> int:
        """Every byte waiting for the kernel (wire and queue)."""
        return self._wire_bytes + self._queued_bytes

    @property
    def charged_bytes(self) -> int:
        """Queued bytes of charged writes: what ``max_backlog`` limits."""
        return self._charged

    @property
    def paced_bytes(self) -> int:
        """Queued (or held, see :meth:`coalesce`) bytes of paced (uncharged) writes."""
        held = self._held
        paced = self._queued_bytes - self._charged
        return paced if held is None else paced + sum(len(data) for data, charged in held if not charged)

    def peer(self) -> tuple[str, int]:
        try:
            addr = self.sock.getpeername()
            if isinstance(addr, (str, bytes)):  # AF_UNIX: the control socket
                return ("local", 0)
            return addr[0], addr[1]
        except OSError:
            return ("", 0)

    # -- raw socket I/O ---------------------------------------------------
    def _recv_now(self, size: int = RECV_SIZE) -> bytes | None:
        """One ``recv``: bytes (b"" at EOF), or None when it would block.

        The caller waits outside this function: awaiting inside the
        ``except BlockingIOError`` clause would keep the exception and its
        traceback alive for as long as the socket stays idle (~0.5 KB per
        idle connection)."""
        if self.closed:
            raise TransportClosed
        try:
            return self.sock.recv(size)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise TransportClosed from exc

    async def _recv_raw(self, size: int = RECV_SIZE) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            data = self._recv_now(size)
            if data is None:
                await trio.lowlevel.wait_readable(self.sock)
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data

    def _commit(self, data: bytes | memoryview) -> None:
        """Put bytes on the wire: what the kernel takes now, the rest kept
        (in order, never dropped).  Never blocks."""
        if not data:
            return
        if self._wire:
            self._wire.append(memoryview(data))
            self._wire_bytes += len(data)
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._mark_broken()
            raise TransportClosed from exc
        if sent < len(data):
            if self._wire is None:
                self._wire = deque()
            self._wire.append(memoryview(data)[sent:])
            self._wire_bytes += len(data) - sent
            if not self._queued and self.on_backlog is not None:
                self.on_backlog()

    def _mark_broken(self) -> None:
        self._wire = None
        self._wire_bytes = 0
        self._queued = None
        self._queued_bytes = 0
        self._charged = 0

    def discard_queued(self) -> int:
        """Drop every queued (or held) write not started yet; return the bytes dropped.

        What is left (the wire) ends on a write boundary, so a frame written
        next (a close frame) is read whole by the peer.
        """
        held, self._held = self._held, None
        dropped = self._queued_bytes + (sum(len(data) for data, _ in held) if held else 0)
        if self._queued:
            self._queued.clear()
        self._queued_bytes = 0
        self._charged = 0
        return dropped

    async def send_some(self, retry_every: float | None = None) -> int:
        """Move waiting bytes on: one ``send`` (after waiting for the socket
        to become writable when the kernel is full, or at most
        ``retry_every`` seconds).  Returns the bytes the kernel took (0
        after a wait).  Only one task sends at a time.
        """
        if self.closed:
            raise TransportClosed
        if not self._wire:
            if not self._queued:
                return 0
            data, charged = self._queued.popleft()
            self._queued_bytes -= len(data)
            if charged:
                self._charged -= len(data)
            out = self._tls.encrypt(data) if self._tls is not None else data
            if self._wire is None:
                self._wire = deque()
            if out:
                self._wire.append(memoryview(out))
                self._wire_bytes += len(out)
            if not self._wire:
                return 0
        view = self._wire[0]
        try:
            sent: int | None = self.sock.send(view)
        except BlockingIOError:
            sent = None
        except OSError as exc:
            self._mark_broken()
            raise TransportClosed from exc
        if sent is None:  # wait outside the except clause (see _recv_now)
            if retry_every is None:
                await trio.lowlevel.wait_writable(self.sock)
            else:
                with trio.move_on_after(retry_every):
                    await trio.lowlevel.wait_writable(self.sock)
            return 0
        self._wire_bytes -= sent
        if sent == len(view):
            self._wire.popleft()
        else:
            self._wire[0] = view[sent:]
        return sent

    async def drain(self, retry_every: float | None = None) -> None:
        """Write out the backlog; returns when it is empty.

        Only one task drains at a time (the writer); others wait for it.
        """
        self.flush_held()
        while self._wire or self._queued:
            await self.send_some(retry_every)
        await trio.lowlevel.checkpoint()

    # -- TLS ----------------------------------------------------------------
    def _flush_tls(self, tls: TlsRecordLayer) -> None:
        """Send what the TLS object produced by itself (handshake, alerts,
        key updates): it is committed, in the record stream's order."""
        if self.closed:
            raise TransportClosed
        pending = tls.outgoing.read()
        if pending:
            self._commit(pending)

    async def handshake(self) -> None:
        """Run the TLS handshake (no-op on plain TCP). Raises TransportClosed."""
        tls = self._tls
        if tls is None:
            return
        while True:
            try:
                done = tls.advance_handshake()
            except TransportClosed:
                # Send the alert if there is one; the peer deserves to know.
                try:
                    self._flush_tls(tls)
                except TransportClosed:
                    pass
                raise
            self._flush_tls(tls)
            await self.drain()
            if done:
                return
            data = await self._recv_raw()
            if not data:
                raise TransportClosed("EOF during TLS handshake")
            tls.incoming.write(data)

    # -- public I/O -----------------------------------------------------------
    async def receive_some(self) -> bytes:
        """Plaintext bytes from the peer; b"" on a clean EOF.

        Every idle connection stays suspended in here, so it awaits trio
        directly, with no helper coroutine in between: each frame in an
        await chain is ~0.25 KB per idle socket."""
        tls = self._tls
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if tls is not None:
                plain = tls.decrypt(RECV_SIZE)
                if plain is not None:
                    self._flush_tls(tls)  # TLS 1.3 may answer (key updates)
                    return plain
            data = self._recv_now()
            if data is None:
                await trio.lowlevel.wait_readable(self.sock)
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            if tls is None or not data:
                return data
            tls.incoming.write(data)

    def coalesce(self, on_failure: Callable[[int, str], None]) -> None:
        """From now on keep each write until the end of the scheduling pass
        and write the pass's writes as one chunk (:mod:`realtime.net.cork`).

        A write then no longer fails at once: a slow consumer's overflow or
        a broken socket found when the chunk is written is reported to
        ``on_failure(close_code, close_reason)`` (the owner's ``withdraw``).
        """
        self.on_failure = on_failure
        self._cork = PassCork.current()

    def write(self, data: bytes, *, charged: bool = True) -> None:
        """Send ``data`` without awaiting (encrypting first on TLS); after
        :meth:`coalesce`, at the end of this scheduling pass.

        While anything waits, ``data`` joins the queue whole (plaintext), so
        order holds and it can still be dropped by :meth:`discard_queued`.

        Args:
            charged: counts against ``max_backlog`` (fan-out the peer did not
                ask for).  False for writes the owner paces itself: it stops
                asking for more until they drain (a ``since`` replay, a
                close frame).

        Raises:
            TransportClosed: the socket is gone.
            BacklogOverflow: the peer is not reading and the queue is full;
                ``data`` was not queued.  (When held, both go to
                ``on_failure`` instead, when the pass's chunk is written.)
        """
        if self.closed:
            raise TransportClosed
        held = self._held
        if held is not None:
            held.append((data, charged))
            return
        cork = self._cork
        if cork is not None and cork.open:
            self._held = [(data, charged)]
            cork.held.append(self)  # cork.hold inlined: once per connection per pass
            if not cork.woken:
                cork.wake()
            return
        self._write_now(data, charged)

    def flush_held(self) -> None:
        """Write what was held in this pass: each run of writes with the same
        charge as one chunk, so the limit applies as it did to each write.
        Never raises: a failure goes to ``on_failure``; after an overflow the
        pass's later charged writes are dropped too (as an owner that has
        withdrawn writes no more), paced ones (a close frame) still go."""
        held, self._held = self._held, None
        if not held or self.closed:
            return
        if len(held) == 1:  # the latency case: one message in the pass
            data, charged = held[0]
            try:
                self._write_now(data, charged)
            except (BacklogOverflow, TransportClosed) as exc:
                if self.on_failure is not None:
                    self.on_failure(exc.close_code, exc.close_reason)
            return
        overflowed = False
        start = 0
        end = len(held)
        while start < end:
            charged = held[start][1]
            stop = start + 1
            while stop < end and held[stop][1] == charged:
                stop += 1
            if not (charged and overflowed):
                for chunk in self._chunks(held, start, stop, charged):
                    failed = self._write_held(chunk, charged)
                    if failed is TransportClosed:
                        return
                    if failed is BacklogOverflow:
                        overflowed = True
                        break
            start = stop

    def _chunks(self, held: list[tuple[bytes, bool]], start: int, stop: int, charged: bool) -> Iterator[bytes]:
        """The writes ``held[start:stop]`` joined into chunks.  A charged
        chunk is at most ``max_backlog`` bytes (a single larger write stays
        whole): what the kernel does not take of a chunk is committed to the
        wire unchecked, so without the cap one pass's fan-out from many
        publishers would pin any amount of memory on a peer that does not
        read; with it the next chunk meets the limit as a queued write does,
        and the peer gets its 4009."""
        if stop - start == 1:
            yield held[start][0]
            return
        if not charged:
            yield b"".join([data for data, _ in held[start:stop]])
            return
        limit = self.max_backlog
        first = start
        size = 0
        for i in range(start, stop):
            n = len(held[i][0])
            if size and size + n > limit:
                yield held[first][0] if i - first == 1 else b"".join([data for data, _ in held[first:i]])
                first, size = i, 0
            size += n
        yield held[first][0] if stop - first == 1 else b"".join([data for data, _ in held[first:stop]])

    def _write_held(self, data: bytes, charged: bool) -> type[CloseError] | None:
        try:
            self._write_now(data, charged)
        except (BacklogOverflow, TransportClosed) as exc:
            if self.on_failure is not None:
                self.on_failure(exc.close_code, exc.close_reason)
            return type(exc)
        return None

    def _write_now(self, data: bytes, charged: bool) -> None:
        if self.closed:
            raise TransportClosed
        if self._wire or self._queued:
            if charged and self._charged + len(data) > self.max_backlog:
                raise BacklogOverflow
            if self._queued is None:
                self._queued = deque()
            self._queued.append((data, charged))
            self._queued_bytes += len(data)
            if charged:
                self._charged += len(data)
            return
        self._commit(self._tls.encrypt(data) if self._tls is not None else data)

    async def send_all(self, data: bytes) -> None:
        """Write ``data`` and wait until the kernel has all of it."""
        self.write(data)
        await self.drain()

    async def linger_close(self, timeout: float = 1.0, max_bytes: int = 1 << 20) -> None:
        """Half-close, then read and discard what the peer still sends.

        Closing a socket with unread input makes the kernel send RST, and the
        peer may then lose the error response we just wrote (RFC 7230 §6.6).
        """
        if self.closed:
            return
        self.flush_held()
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        discarded = 0
        with trio.move_on_after(timeout):
            while discarded < max_bytes:
                try:
                    data = await self._recv_raw()
                except TransportClosed:
                    break
                if not data:
                    break
                discarded += len(data)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        # What was held goes as a write would have: to the kernel, now.
        self.flush_held()
        self.closed = True
        self._mark_broken()
        # Input left unread makes close() send RST, and RST throws away what
        # the kernel still holds for the peer (a 4009 close frame behind a
        # slow reader's buffer): read what has arrived first.
        for _ in range(16):
            try:
                if not self.sock.recv(RECV_SIZE):
                    break
            except OSError:
                break
        try:
            trio.lowlevel.notify_closing(self.sock)
        except (RuntimeError, OSError):
            pass
        try:
            self.sock.close()
        except OSError:
            pass
