"""What the hub answers: the refusal it raises and the results it returns."""

from __future__ import annotations

import attrs


class HubError(Exception):
    """A refused subscribe, publish or presence; the connection stays open.

    ``code`` is stable (see :mod:`realtime.protocol.messages`); ``message`` is
    for people.  ``/api/publish`` maps ``forbidden`` to 403
    ``insufficient_scope``, ``unknown_channel``/``bad_channel``/
    ``bad_data`` to 400.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@attrs.frozen
class SubscribeResult:
    """The outcome of :meth:`Hub.subscribe`.

    Attributes:
        replay: frames to send before anything live, oldest first.
        recovered: see "Recovery" in :mod:`realtime.hub`; ``True`` without
            ``since``.
        seq: the channel's newest ``seq`` at this moment (0: none yet).
        new: ``False`` when the connection was already subscribed.
    """

    replay: list[bytes]
    recovered: bool
    seq: int
    new: bool = True


@attrs.frozen
class PublishResult:
    """``{"delivered": N, "seq": S}`` of ``/api/publish``."""

    delivered: int
    seq: int
