"""Publishes to Redis in batches: every publish that arrives in one
scheduling pass goes out as one pipeline of ``EVALSHA`` calls.

Why: coredis spends ~250 µs of CPU on one script call (its request,
retry, connection-pool and writer-task layers; ~900 Python calls), which
made a node that publishes through Redis both slow (a few thousand
publishes/s per core) and late: publishes that arrive together waited for
each other one call at a time.  In a pipeline that cost is paid per
batch (tools/bench/publish_cpu.py: ~95 µs per publish with 4 in flight,
~50 µs with 10), and the batch leaves as one write.

Order: one task sends the batches, one pipeline at a time, in the order
the publishes arrived, so Redis runs them (and numbers each channel's
messages) in that order.  The script is loaded on every new connection,
so a batch meets NOSCRIPT only after a ``SCRIPT FLUSH`` on a live
connection; the calls that answered NOSCRIPT did not run and are run
again, after the rest of their batch.

Answers: each publish gets its own reply.  When the connection fails
part-way, the publishes whose replies had arrived keep them; only those
without a reply answer "unavailable" (they may still have run, as a
single call cut off after it was sent may have).  A batch that times out
or loses its connection also answers everything queued behind it, so no
publish waits for longer than one batch's timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import coredis.exceptions
import trio

from realtime.hub.broker import BrokerUnavailable
from realtime.net.redis.state import REDIS_ERRORS, BrokerState, log

#: Publishes in one pipeline at most; the rest go in the next.
MAX_BATCH = 256


#: Where a pipeline command had no reply (the connection failed first).
_NO_REPLY: Any = object()


@attrs.define(slots=True, eq=False)
class _Pending:
    keys: list[bytes]
    args: list[Any]
    done: trio.Event = attrs.field(factory=trio.Event)
    answer: Any = None
    error: str | None = None
    abandoned: bool = False  # the caller was cancelled before it was sent: never send it

    def fail(self, reason: str) -> None:
        if not self.done.is_set():
            self.error = reason
            self.done.set()


class PublishBatches:
    """The queue of publishes waiting for Redis and the task that sends them.

    :meth:`run` lives as long as one connection (the link starts it with
    the pub/sub tasks); :meth:`fail_all` is called when the connection is
    lost, so no publish waits for a connection that is gone.  The queue
    needs no bound of its own: each publisher (a session, an API request)
    waits for its answer before it publishes again.
    """

    def __init__(self, state: BrokerState) -> None:
        self.state = state
        self._queue: list[_Pending] = []
        self._wake = trio.Event()
        self.batches = 0  # pipelines sent (tests and profiles read it)
        self.in_flight = 0  # publishes sent and waiting for Redis

    async def publish(self, keys: list[bytes], args: list[Any]) -> Any:
        """Run the publish script with ``keys`` and ``args``; its answer.

        Raises:
            BrokerUnavailable: Redis is unreachable or failed the call.
        """
        if not self.state.up:
            raise BrokerUnavailable("the message broker is unreachable")
        pending = _Pending(keys, args)
        self._queue.append(pending)
        self._wake.set()
        try:
            await pending.done.wait()
        except BaseException:
            pending.abandoned = True  # a revoked or expired session's message stays unsent
            raise
        if pending.error is not None:
            raise BrokerUnavailable(pending.error)
        return pending.answer

    def fail_all(self, reason: str = "the message broker is unreachable") -> None:
        """Answer every publish not sent yet with :class:`BrokerUnavailable`."""
        waiting, self._queue = self._queue, []
        for pending in waiting:
            pending.fail(reason)

    async def run(self, client: Any) -> None:
        """Send the queued publishes on ``client``, a batch per pipeline,
        until cancelled (the connection's end); whatever is in flight then
        is answered as unavailable."""
        script = self.state.scripts["publish"]
        batch: list[_Pending] = []
        try:
            script.sha = await client.script_load(script.script)
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._queue:
                    batch = [p for p in self._queue[:MAX_BATCH] if not p.abandoned]
                    del self._queue[:MAX_BATCH]  # what arrives meanwhile joins the end
                    if batch and not await self._send(client, script, batch):
                        self.fail_all("the message broker did not answer")
                    batch = []
        finally:
            self.in_flight = 0
            for pending in batch:
                pending.fail("the message broker is unreachable")
            self.fail_all()

    async def _send(self, client: Any, script: Any, batch: list[_Pending]) -> bool:
        """Send ``batch`` and answer each publish in it; False when the
        connection failed or timed out (the queue behind it is answered too)."""
        answers: list[Any] = [_NO_REPLY] * len(batch)
        self.in_flight = len(batch)
        failure: str | None = None
        try:
            await self._pipeline(client, script.sha, batch, answers, range(len(batch)))
            missing = [i for i, answer in enumerate(answers) if isinstance(answer, coredis.exceptions.NoScriptError)]
            if missing:
                # SCRIPT FLUSH on this connection: load it again and run the
                # calls that did not run.
                script.sha = await client.script_load(script.script)
                await self._pipeline(client, script.sha, batch, answers, missing)
        except REDIS_ERRORS as exc:
            failure = str(exc) or type(exc).__name__
        finally:
            self.in_flight = 0
        self.batches += 1
        reasons: list[str] = []
        timed_out = False
        for pending, answer in zip(batch, answers):
            if answer is _NO_REPLY or isinstance(answer, BaseException):
                # No reply only when the pipeline raised: failure says why.
                reason = failure or str(answer) or type(answer).__name__
                reasons.append(reason)
                timed_out = timed_out or isinstance(answer, TimeoutError)
                pending.fail(reason)
            else:
                pending.answer = answer
                pending.done.set()
        if reasons:
            log.warning("publish of %d of %d message(s) failed: %s", len(reasons), len(batch), reasons[0])
        return failure is None and not timed_out

    @staticmethod
    async def _pipeline(client: Any, sha: Any, batch: list[_Pending], answers: list[Any],
                        indexes: Sequence[int]) -> None:
        """Run ``batch[i]`` for each ``i`` in ``indexes`` as one pipeline and
        put each reply (or per-call error) in ``answers[i]``; a call with no
        reply keeps :data:`_NO_REPLY`.  Raises what the pipeline raised
        (the connection failed), after recording the replies that came."""
        requests: list[Any] = []
        for i in indexes:
            answers[i] = _NO_REPLY
        try:
            async with client.pipeline(transaction=False, raise_on_error=False) as pipe:
                requests = [pipe.evalsha(sha, keys=batch[i].keys, args=batch[i].args) for i in indexes]
        finally:
            for i, request in zip(indexes, requests):
                try:
                    answers[i] = await request  # resolved already: no checkpoint
                except RuntimeError:
                    pass  # coredis: "can't await a pipeline command before it completes": no reply
                except Exception as exc:  # noqa: BLE001 - the call's own error (a script error, a timeout)
                    answers[i] = exc
