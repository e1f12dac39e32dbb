"""Write coalescing for one synchronous batch of client messages.

When one ``recv`` brings several messages (a publisher with a few
publishes in flight), each publish fans out to every subscriber, and each
subscriber used to get one ``send`` (and on TLS one record) per publish.
While the cork is held, :meth:`Session.offer` keeps the frames instead;
releasing it writes each session's frames as one chunk: one ``send``, one
TLS record, in the same order.  Node's ``ws`` gets the same effect from
its socket's cork.

The cork never spans an ``await``: the reader holds it only while it
handles one batch synchronously and releases it before any await (a remote
broker's round trip) and when the batch ends.  So no frame waits longer
than the batch that produced it, no other task ever sees it held, and a
single message (the latency case) is never corked at all.
"""

from __future__ import annotations

from typing import Protocol


class Holder(Protocol):
    """What the cork needs from a session that kept frames while it was held.

    A protocol rather than the session class itself: the session imports
    the cork, and the cork must not import the session back.
    """

    def release_held(self) -> None:
        """Write the frames kept while the cork was held, as one chunk."""
        ...


class Cork:
    """The process-wide cork (one event loop, one holder at a time)."""

    __slots__ = ("active", "held")

    def __init__(self) -> None:
        self.active = False
        self.held: list[Holder] = []  # sessions with frames kept, in first-offer order

    def hold(self) -> bool:
        """Start holding; False when already held (the outer holder releases)."""
        if self.active:
            return False
        self.active = True
        return True

    def release(self) -> None:
        """Write out every held session's frames, each as one chunk."""
        self.active = False
        held, self.held = self.held, []
        for session in held:
            session.release_held()


CORK = Cork()
