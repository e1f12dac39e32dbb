"""A quick reader for the one request head most connections start with: a
WebSocket upgrade, ``GET`` with a handful of headers and no body.

h11 stays the HTTP/1.1 stack: this reader accepts only a strict subset of
what h11 accepts, and for those heads it gives the same method, target and
headers h11 would (names lower-cased, values without the surrounding
whitespace).  Anything else, however harmless, is left to h11 by
answering ``None``: another method, another HTTP version, a target that is
not origin-form printable ASCII, bytes outside printable ASCII and
SP/HTAB in a header, obsolete line folding, a bare CR or LF, a body
(``Content-Length`` or ``Transfer-Encoding``), no or several ``Host``
headers, more than one head (pipelining or early frames), or a head that
is not complete.  So every error is still found and answered by h11, with
the same status and body as before.

Reading the head this way costs about a tenth of a full h11 round (the
connection's state machine, header validation, event objects).
"""

from __future__ import annotations

import re

_REQUEST_LINE = re.compile(rb"GET (/[\x21-\x7e]*) HTTP/1\.1")
# RFC 9110 §5.1 token, ":", then printable ASCII with SP/HTAB; h11's OWS
# around the value is stripped below, as h11 does.
_HEADER_LINE = re.compile(rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+):([\x20-\x7e\t]*)")
_BODY_HEADERS = frozenset({"content-length", "transfer-encoding"})
_END = b"\r\n\r\n"


def read_get_head(data: bytes) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """``(target, headers)`` of ``data`` when it is exactly one complete,
    plain ``GET`` head that h11 would read the same way; else None."""
    if not data.endswith(_END) or data.find(_END) != len(data) - 4:
        return None
    lines = data[:-4].split(b"\r\n")
    first = _REQUEST_LINE.fullmatch(lines[0])
    if first is None:
        return None
    headers: list[tuple[str, str]] = []
    hosts = 0
    for line in lines[1:]:
        match = _HEADER_LINE.fullmatch(line)
        if match is None:
            return None
        name = match[1].decode("ascii").lower()
        if name in _BODY_HEADERS:
            return None
        if name == "host":
            hosts += 1
        headers.append((name, match[2].strip(b" \t").decode("ascii")))
    if hosts != 1:  # h11: HTTP/1.1 needs exactly one Host header
        return None
    return first[1].decode("ascii"), tuple(headers)
