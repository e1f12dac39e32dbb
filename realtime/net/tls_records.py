"""The TLS record layer of one connection: an ``ssl.SSLObject`` between two
``MemoryBIO``s, with no socket.

Apart from :mod:`realtime.net.transport` because it has its own job and
its own state (OpenSSL's object and its two buffers), and only a TLS
connection has it: the transport composes one for TLS connections only,
so a plain connection pays one empty slot.  The transport feeds
:attr:`TlsRecordLayer.incoming` the bytes its socket read and commits
what :attr:`TlsRecordLayer.outgoing` holds; the socket, the wire and the
queue stay the transport's.
"""

from __future__ import annotations

import ssl

from realtime.net.transport_errors import TransportClosed


class TlsRecordLayer:
    """OpenSSL's side of one server connection.

    Args:
        ssl_context: the listener's context; the layer is server side.

    ``incoming`` holds the ciphertext read from the socket and not yet
    decrypted; ``outgoing`` the records OpenSSL produced and the transport
    has not committed yet.
    """

    # One per TLS connection, thousands at once: slots instead of a dict.
    __slots__ = ("ssl_object", "incoming", "outgoing")

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.ssl_object = ssl_context.wrap_bio(self.incoming, self.outgoing, server_side=True)

    def advance_handshake(self) -> bool:
        """One step of the handshake: True once it is done, False when it
        needs more bytes from the peer (in :attr:`incoming`).  What it
        produced (its flights, an alert) waits in :attr:`outgoing`.

        Raises:
            TransportClosed: the handshake failed.
        """
        try:
            self.ssl_object.do_handshake()
        except ssl.SSLWantReadError:
            return False  # wait outside the except clause (see Transport._recv_now)
        except ssl.SSLError as exc:
            raise TransportClosed(f"TLS handshake failed: {exc.reason}") from exc
        return True

    def encrypt(self, data: bytes) -> bytes:
        """``data`` as records, ready for the wire."""
        try:
            self.ssl_object.write(data)
        except ssl.SSLError as exc:
            raise TransportClosed(f"TLS error: {exc.reason}") from exc
        return self.outgoing.read()

    def decrypt(self, size: int) -> bytes | None:
        """The plaintext the TLS object can give now, up to ``size`` bytes
        (b"" after the peer's close_notify), or None when it needs more
        bytes from the socket.  What it produced by itself meanwhile (TLS
        1.3 may answer: key updates) waits in :attr:`outgoing`."""
        try:
            data = self.ssl_object.read(size)
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLZeroReturnError:
            return b""
        except ssl.SSLError as exc:
            raise TransportClosed(f"TLS error: {exc.reason}") from exc
        if self.incoming.pending:
            data = self._read_more_records(data, size)
        return data

    def _read_more_records(self, first: bytes, limit: int) -> bytes:
        """Decrypt the records already received after ``first``.

        ``SSLObject.read`` hands out one record at a time; returning every
        record already here lets the reader see several messages as one
        batch (and cork their fan-out) just as it does on plain TCP.
        """
        chunks = [first]
        size = len(first)
        while self.incoming.pending and size < limit:
            try:
                more = self.ssl_object.read(limit - size)
            except ssl.SSLError:
                break  # want-read, close_notify or an error: the next receive_some reports it
            if not more:
                break
            chunks.append(more)
            size += len(more)
        return b"".join(chunks) if len(chunks) > 1 else first
