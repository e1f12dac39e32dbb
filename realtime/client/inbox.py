"""The caller's side of a client, whichever transport it uses: iterate it
for :class:`~realtime.client.wire.Message` values, or wait on its state."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Self

import trio

from realtime.client.wire import Message


class Inbox:
    """Messages queued by the client's run() for the iterating caller, and
    a state-change event for :meth:`wait_until`.

    Subclasses set ``_send``/``_recv`` (a memory channel of messages),
    ``_failure`` (the fatal error, raised to the caller) and ``_changed``.
    """

    _send: trio.MemorySendChannel[Message]
    _recv: trio.MemoryReceiveChannel[Message]
    _failure: BaseException | None
    _changed: trio.Event

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._failure is not None:
                raise self._failure from None
            raise StopAsyncIteration from None

    async def wait_until(self, predicate: Callable[[Self], bool], timeout: float | None = None) -> None:
        """Wait until ``predicate(client)`` holds (checked on each state change).

        Raises:
            trio.TooSlowError: ``timeout`` passed first.
            ClientError: the client stopped for good first.
        """
        with trio.fail_after(timeout if timeout is not None else math.inf):
            while not predicate(self):
                if self._failure is not None:
                    raise self._failure
                await self._changed.wait()

    def _touch(self) -> None:
        """Wake every wait_until() to check its predicate again."""
        self._changed.set()
        self._changed = trio.Event()
