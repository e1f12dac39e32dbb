"""Keep-alive for every WebSocket session of the run, from one task.

Why: a session's keep-alive used to be its reader's receive deadline, so
each ping cancelled the reader's wait: a ``Cancelled`` raised through the
wait, the socket taken out of epoll and put back, the reader's loop run
once more.  That made a ping cost an idle node ≥ 87 µs of CPU (about a
third of a core at 100,000 sockets and the default 25 s interval).  Here
one task sleeps until the earliest session is due and runs its timers
there: a ping is a synchronous write, a silent peer is withdrawn, and the
reader stays parked on its socket until the pong arrives.

The reader keeps the rare timers, whose deadline it already waits on
(the token's expiry and its warning, once per token).

Each session has one :class:`Entry`, kept in a heap by the instant it is
due; an entry that moved (the peer spoke, a ping was sent) is found stale
when it comes up and pushed again at the session's next instant.  When a
session ends it lets go of its entry (:meth:`Entry.release`), so the heap
keeps no closed session alive until its old instant comes up.
"""

from __future__ import annotations

import heapq
import math
from typing import Protocol

import trio

__all__ = ["Entry", "KeepAlive", "Pinged"]


class Pinged(Protocol):
    """What the keep-alive task needs from a session.

    A protocol rather than the session class: the session imports this
    module, and this module must not import the session back.
    """

    @property
    def close_code(self) -> int | None: ...

    def keepalive_at(self) -> float:
        """The next instant a keep-alive timer is due (``math.inf``: none)."""
        ...

    def on_keepalive(self, now: float) -> None:
        """Run what is due at ``now``: send a ping, or withdraw a silent peer."""
        ...


class Entry:
    """One session's place in the heap (the heap holds ``(at, entry)``)."""

    __slots__ = ("session", "at")

    def __init__(self, session: Pinged) -> None:
        self.session: Pinged | None = session
        self.at = math.inf  # the instant of this entry's live heap item

    def release(self) -> None:
        """The session ended: drop it (its heap item is skipped when it comes up)."""
        self.session = None

    def __lt__(self, other: "Entry") -> bool:
        return False  # items due at the same instant: any order


class KeepAlive:
    """The keep-alive heap of one trio run and the task that serves it."""

    __slots__ = ("_heap", "_task", "_parked", "_sleeping_until", "fired")

    def __init__(self) -> None:
        self._heap: list[tuple[float, Entry]] = []
        self._task: trio.lowlevel.Task | None = None
        self._parked = False  # the task waits (and may be woken by _push)
        self._sleeping_until = math.inf  # when the parked task wakes by itself
        self.fired = 0  # timers run (tests and profiles read it)

    @classmethod
    def current(cls) -> "KeepAlive":
        """This run's keep-alive; the first call starts its task (a system task)."""
        try:
            return _KEEPALIVE.get()
        except LookupError:
            pass
        keepalive = cls()
        _KEEPALIVE.set(keepalive)
        trio.lowlevel.spawn_system_task(keepalive._serve, name="realtime.net.keepalive")
        return keepalive

    def watch(self, session: Pinged) -> Entry:
        """Keep ``session`` alive from now on; release the entry when it ends."""
        entry = Entry(session)
        self._push(entry, session.keepalive_at())
        return entry

    def sessions(self) -> list[Pinged]:
        """The sessions kept alive now (tests read it)."""
        return [entry.session for at, entry in self._heap if entry.session is not None and entry.at == at]

    def items(self) -> int:
        """Items in the heap, stale ones included (tests read it)."""
        return len(self._heap)

    def _push(self, entry: Entry, at: float) -> None:
        entry.at = at
        if at == math.inf:
            return  # nothing due (keep-alive off): nothing kept
        heapq.heappush(self._heap, (at, entry))
        if self._parked and at < self._sleeping_until:
            self._parked = False
            assert self._task is not None
            trio.lowlevel.reschedule(self._task)

    def _run_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, entry = heapq.heappop(heap)
            session = entry.session
            if session is None or entry.at != at:
                continue  # ended, or pushed again at another instant
            if session.close_code is not None:
                entry.release()
                continue
            if session.keepalive_at() <= now:
                self.fired += 1
                session.on_keepalive(now)
                if session.close_code is not None:
                    entry.release()
                    continue
            self._push(entry, session.keepalive_at())

    async def _serve(self) -> None:
        self._task = trio.lowlevel.current_task()
        try:
            while True:
                self._run_due(trio.current_time())
                await self._sleep(self._heap[0][0] if self._heap else math.inf)
        finally:
            self._parked = False
            self._task = None

    async def _sleep(self, until: float) -> None:
        """Until ``until``, or until :meth:`_push` brings an earlier item
        (it reschedules this task)."""
        self._sleeping_until = until
        self._parked = True
        try:
            with trio.CancelScope(deadline=until):
                await trio.lowlevel.wait_task_rescheduled(self._abort)
        finally:
            self._parked = False

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._parked = False  # the deadline passed (or the run ends): no reschedule now
        return trio.lowlevel.Abort.SUCCEEDED


_KEEPALIVE: trio.lowlevel.RunVar[KeepAlive] = trio.lowlevel.RunVar("realtime.net.keepalive")
