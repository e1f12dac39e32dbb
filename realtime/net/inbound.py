"""A client message assembled from its frames, and what it costs against
``[websocket] max_message_bytes``.

wsproto hands the session one event per frame (or per piece of a frame
that arrived in parts).  Counting only payload bytes let a run of empty
continuation frames grow a message without bound; here each continuation
frame also costs :data:`FRAME_COST`.
"""

from __future__ import annotations

import io

FRAME_COST = 64
"""Bytes each continuation frame costs against ``max_message_bytes`` on
top of its payload, so a run of empty or tiny fragments is a message too
big (1009) after ``max_message_bytes / 64`` frames instead of growing
without bound.  A message in one frame is limited by its payload alone.
Autobahn's smallest fragments (64 bytes) cost twice their size."""


class Fragments:
    """The message being received, joined into one buffer as its frames
    come (not a list of pieces, which costs a slot per frame)."""

    __slots__ = ("text", "data", "cost", "frames")

    def __init__(self, is_text: bool) -> None:
        self.text: io.StringIO | None = io.StringIO() if is_text else None
        self.data = bytearray()
        self.cost = 0  # payload bytes plus FRAME_COST per continuation frame
        self.frames = 0  # frames finished so far

    def add(self, chunk: str | bytes, frame_finished: bool, max_bytes: int) -> bool:
        """Take one piece; False when the message is now over ``max_bytes``."""
        if isinstance(chunk, str):
            self.cost += utf8_size(chunk)
            if self.cost <= max_bytes:
                assert self.text is not None
                self.text.write(chunk)
        else:
            self.cost += len(chunk)
            if self.cost <= max_bytes:
                self.data += chunk
        if frame_finished:
            if self.frames:  # the first frame is limited by its payload alone
                self.cost += FRAME_COST
            self.frames += 1
        return self.cost <= max_bytes

    def whole(self) -> str | bytes:
        return self.text.getvalue() if self.text is not None else bytes(self.data)


def utf8_size(text: str) -> int:
    # Cheap bound first: most messages are far below the limit.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
