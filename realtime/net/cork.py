"""Write coalescing across one scheduling pass of the event loop.

Each publish fans out to every subscriber.  With many publishers, each
on its own socket, the publishes that arrive together are handled by
different reader tasks, one after another in the same trio batch; writing
each frame at once costs every recipient one ``send`` (and on TLS one
record) per publish.  Instead, a transport that joined the cork
(:meth:`realtime.net.transport.Transport.coalesce`) keeps what it is asked
to write, and one task per trio run, the *flusher*, writes each
transport's kept frames as one chunk: one ``send``, one TLS record, in
the order they were written.

When: the first frame kept in a pass reschedules the flusher, which trio
then runs in its next batch, i.e. after every task that is runnable now
(the other readers woken by the same epoll round, the Redis pump).  A
runnable task keeps trio's epoll timeout at zero, so a kept frame never
waits across an idle wait: the added latency is one scheduler batch.

A producer that hands over one message per batch (the Redis pump, behind
coredis' pub/sub task chain) calls :meth:`PassCork.streaming` after each;
the flusher then waits for two batches in a row in which it brought
nothing (at most :data:`MAX_DEFERRED` batches), so messages that came in
one read from Redis still go out as one write per recipient.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

log = logging.getLogger("realtime.net")

#: Batches the flusher may wait for a streaming producer before it writes
#: anyway: the bound on the latency it adds beyond one batch.
MAX_DEFERRED = 16


class Held(Protocol):
    """What the cork needs from a transport that kept frames.

    A protocol rather than the transport class itself: the transport
    imports the cork, and the cork must not import the transport back.
    """

    def flush_held(self) -> None:
        """Write the kept frames as one chunk; report failures to the owner, never raise."""
        ...


class PassCork:
    """The cork of one trio run: the transports holding frames and the
    flusher task that writes them out."""

    __slots__ = ("open", "held", "_task", "woken", "_streamed", "flushes")

    def __init__(self) -> None:
        # True until the flusher ends (with the run): transports hold their
        # writes; after that they write at once.
        self.open = True
        self.held: list[Held] = []  # in the order of their first frame in the pass
        self._task: trio.lowlevel.Task | None = None
        # The flusher is runnable (just spawned, woken, or flushing): a hold
        # need not wake it.  Its first step flushes what was held meanwhile.
        self.woken = True
        self._streamed = False
        self.flushes = 0  # passes written out (tests and profiles read it)

    @classmethod
    def current(cls) -> "PassCork":
        """This run's cork; the first call starts its flusher (a system task)."""
        try:
            return _CORK.get()
        except LookupError:
            pass
        cork = cls()
        _CORK.set(cork)
        trio.lowlevel.spawn_system_task(cork._flusher, name="realtime.net.cork flusher")
        return cork

    def hold(self, transport: Held) -> None:
        """``transport`` kept its first frame of this pass: flush it at the
        pass's end.  (Transport.write does the same inline.)"""
        self.held.append(transport)
        if not self.woken:
            self.wake()

    def wake(self) -> None:
        """Run the flusher in trio's next batch."""
        self.woken = True
        assert self._task is not None
        trio.lowlevel.reschedule(self._task)

    def streaming(self) -> None:
        """A producer that brings one message per batch just brought one (see the module doc)."""
        self._streamed = True

    def flush(self) -> None:
        """Write out every held transport (and any that holds while this runs)."""
        if self.held:
            self.flushes += 1
        while self.held:
            held, self.held = self.held, []
            for transport in held:
                try:
                    transport.flush_held()
                except Exception:  # a bug: keep the run (this is a system task) and the others
                    log.exception("writing held frames failed")

    async def _flusher(self) -> None:
        self._task = trio.lowlevel.current_task()
        try:
            while True:
                await self._wait_for_streaming_producer()
                self.flush()
                self.woken = False
                await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.SUCCEEDED)
        finally:
            self.open = False
            self.flush()  # the run is ending: nothing held is lost
            self._task = None

    async def _wait_for_streaming_producer(self) -> None:
        """While a streaming producer still brings a message each batch, let
        it (never idle: this task stays runnable); see the module doc."""
        if not self._streamed:
            return  # the usual case: flush in the batch after the first hold
        quiet = 0
        for _ in range(MAX_DEFERRED):
            if self._streamed:
                self._streamed = False
                quiet = 0
            else:
                quiet += 1
                # One quiet batch can be chance (the producer ran before us
                # in one batch and after us in the next); two cannot.
                if quiet == 2:
                    return
            await trio.lowlevel.cancel_shielded_checkpoint()


_CORK: trio.lowlevel.RunVar[PassCork] = trio.lowlevel.RunVar("realtime.net.cork")
