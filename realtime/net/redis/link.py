"""The connection to Redis for :class:`realtime.net.redis.broker.RedisBroker`:
the startup check, and the task that stays connected (with backoff),
rebuilds this node's state in Redis on every (re)connect, heartbeats,
and sends queued revocations and presence reports.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import coredis
import trio
from coredis.retry import NoRetryPolicy

from realtime.hub.broker import BrokerUnavailable
from realtime.net.redis import lua
from realtime.net.redis.delivery import Delivery
from realtime.net.redis.publishing import PublishBatches
from realtime.net.redis.requests import CTL_CHANNEL, Requests, reply_channel
from realtime.net.redis.streams import REFRESH_CHANNEL
from realtime.net.redis.state import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    READY_TIMEOUT,
    REVOCATION_GRACE,
    BrokerState,
    as_bytes,
    as_text,
    log,
)

__all__ = ["Link"]


class Link:
    """The connection of :class:`realtime.net.redis.broker.RedisBroker`.

    Args:
        state: shared with ``delivery``; the link sets ``client``, ``up``,
            ``connected``/``lost`` and the counters.
        delivery: run on each connection (resubscribe, control, pump).
    """

    def __init__(self, state: BrokerState, delivery: Delivery, requests: Requests,
                 publishes: PublishBatches) -> None:
        self.state = state
        self.delivery = delivery
        self.requests = requests
        self.publishes = publishes
        # stop() cancels the work on the current connection through this
        # scope, which sits *inside* the pub/sub context: the pub/sub then
        # exits normally and unsubscribes while its connection is still open.
        self._connection_scope: trio.CancelScope | None = None
        self.stopping = False
        self.stopped = trio.Event()  # set once run() has returned
        self._stop_wake = trio.Event()

    def stop(self) -> None:
        """Ask :meth:`run` to leave: the pub/sub reader and the tasks on the
        connection stop, the pub/sub unsubscribes, the client closes, the
        node's presence is removed, and :attr:`stopped` is set.

        The server calls this at shutdown *before* cancelling its nursery:
        a cancellation reaching coredis' pub/sub and its connection pool at
        the same moment lets the pool close the connection first, and the
        pub/sub's cleanup then fails writing UNSUBSCRIBE to it.
        """
        self.stopping = True
        self._stop_wake.set()
        if self._connection_scope is not None:
            self._connection_scope.cancel()

    # -- queued for the flusher (sync) ---------------------------------------------

    def report(self, channel: str, sub: str) -> None:
        """Queue ``sub``'s count on ``channel`` for the next flush."""
        dirty = self.state.dirty
        subs = dirty.get(channel)
        if subs is None:
            dirty[channel] = {sub}
        else:
            subs.add(sub)
        self.state.flush_wake.set()

    def share_revocation(self, jti: str, exp: float) -> None:
        """Queue a local revocation for every node (kept while Redis is down)."""
        self.state.revocations.append((jti, exp))
        self.state.flush_wake.set()

    def _new_client(self) -> Any:
        # No retries inside coredis: a failed command answers "unavailable"
        # at once, and run() owns reconnecting (with its backoff and logs).
        return coredis.Redis.from_url(
            self.state.url, decode_responses=False, connect_timeout=2.0, stream_timeout=5.0,
            retry_policy=NoRetryPolicy(),
        )

    async def check(self) -> None:
        """Ping Redis once; at startup an unreachable broker is fatal.

        Raises:
            BrokerUnavailable: with the URL and the reason.
        """
        state = self.state
        try:
            with trio.fail_after(5):
                async with self._new_client() as client:
                    await client.ping()
        except trio.TooSlowError:
            raise BrokerUnavailable(f"broker {state.shown_url} is unreachable: no answer within 5s") from None
        except Exception as exc:  # coredis raises inside an ExceptionGroup here
            raise BrokerUnavailable(f"broker {state.shown_url} is unreachable: {_reason(exc)}") from None

    # -- the connection task -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay connected: subscribe, deliver, heartbeat, report; reconnect
        with backoff.  Runs in the server's root nursery until :meth:`stop`
        (or a cancellation)."""
        state = self.state
        started = False
        ever = False  # connected at least once
        backoff = BACKOFF_FIRST
        attempt = 0  # attempts since the last good connection
        try:
            while not self.stopping:
                attempt += 1
                try:
                    async with self._new_client() as client:
                        state.client = client
                        state.scripts = {
                            "publish": client.register_script(lua.PUBLISH),
                            "seed": client.register_script(lua.SEED),
                            "report": client.register_script(lua.REPORT),
                            "heartbeat": client.register_script(lua.HEARTBEAT),
                            "revoke": client.register_script(lua.REVOKE),
                            "presence": client.register_script(lua.PRESENCE),
                        }
                        async with client.pubsub(
                            retry_policy=None, ignore_subscribe_messages=True,
                            subscription_timeout=READY_TIMEOUT, max_idle_seconds=max(1.0, state.node_ttl / 4),
                        ) as ps:
                            with self._cancelled_by_stop():
                                await self._connected(client, ps)
                                if ever:
                                    log.info("broker: reconnected to %s (attempt %d); resubscribed %d channel(s)",
                                             state.shown_url, attempt, len(state.watches))
                                else:
                                    log.info("broker: connected to %s as node %s", state.shown_url, state.node)
                                ever = True
                                attempt = 0
                                backoff = BACKOFF_FIRST
                                if not started:
                                    started = True
                                    task_status.started()
                                async with trio.open_nursery() as nursery:
                                    nursery.start_soon(self._heartbeat)
                                    nursery.start_soon(self._flusher)
                                    nursery.start_soon(self.delivery.control, ps)
                                    nursery.start_soon(self.requests.serve)
                                    nursery.start_soon(self.publishes.run, client)
                                    await self.delivery.pump(ps)
                except Exception as exc:  # ExceptionGroup from the pub/sub task group too
                    self._down()
                    if self.stopping:
                        self._log_stop_error(exc)
                        break
                    reason = _reason(exc)
                    if attempt == 0:
                        log.warning("broker: lost connection to %s: %s", state.shown_url, reason)
                    else:
                        log.warning("broker: cannot reach %s (attempt %d): %s; retrying in %.1fs",
                                    state.shown_url, attempt, reason, backoff)
                self._down()
                if not started:
                    started = True
                    task_status.started()
                if self.stopping:
                    break
                with trio.move_on_after(backoff):
                    await self._stop_wake.wait()
                if self.stopping:
                    break
                backoff = min(backoff * 2, BACKOFF_MAX)
                log.info("broker: reconnecting to %s", state.shown_url)
        finally:
            self._down()
            await self._leave()
            self.stopped.set()

    def _cancelled_by_stop(self) -> trio.CancelScope:
        """The scope :meth:`stop` cancels (already cancelled if it came first)."""
        scope = self._connection_scope = trio.CancelScope()
        if self.stopping:
            scope.cancel()
        return scope

    @staticmethod
    def _log_stop_error(exc: Exception) -> None:
        """An error while leaving after :meth:`stop`.  The one expected kind:
        the connection died just as we left, so the pub/sub's UNSUBSCRIBE
        finds its write stream closed (anyio.ClosedResourceError); that is
        only worth a debug line.  Anything else is reported."""
        if isinstance(exc, BaseExceptionGroup):
            _, rest = exc.split(anyio.ClosedResourceError)
        else:
            rest = None if isinstance(exc, anyio.ClosedResourceError) else exc
        if rest is None:
            log.debug("broker: connection already closed while unsubscribing at shutdown")
        else:
            log.warning("broker: error while leaving at shutdown: %s", _reason(rest))

    async def _leave(self) -> None:
        """On shutdown: remove this node's presence at once (no waiting for
        the node_ttl), best effort."""
        state = self.state
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                async with self._new_client() as client:
                    await client.register_script(lua.HEARTBEAT)(
                        args=[state.node, int(state.node_ttl * 1000), int(state.idle_ttl * 1000),
                              int(time.time() - REVOCATION_GRACE), "1"])
            except Exception:  # noqa: BLE001 - best effort; others reap us after node_ttl
                log.info("broker: could not remove node %s at shutdown; other nodes will after %.0fs",
                         state.node, state.node_ttl)

    def _down(self) -> None:
        state = self.state
        if state.up:
            state.reconnects += 1
            state.lost.set()
        state.up = False
        state.client = None
        state.connected = trio.Event() if state.connected.is_set() else state.connected
        self.delivery.reset()
        self.publishes.fail_all()

    async def _connected(self, client: Any, ps: Any) -> None:
        """(Re)build everything this node holds in Redis, before any delivery."""
        state = self.state
        await ps.subscribe(lua.REVOKE_CHANNEL, REFRESH_CHANNEL,  # revocations; SSE refreshes
                           CTL_CHANNEL, reply_channel(state.node))  # server API requests
        # Revocations made here while Redis was away go out first.
        while state.revocations:
            jti, exp = state.revocations[0]
            await client.register_script(lua.REVOKE)(args=[state.node, exp, jti])
            state.revocations.popleft()
        horizon = time.time() - REVOCATION_GRACE
        revoked = await client.zrangebyscore(lua.REVOKED, horizon, "+inf", withscores=True)
        if state.on_revoke is not None:
            for jti, exp in revoked:
                state.on_revoke(as_text(jti), float(exp))
        await self._apply_cutoffs(client)
        state.up = True
        await self.delivery.resubscribe(ps)
        # Presence and counts: report everything again (absolute values).
        self._report_all()
        state.lost = trio.Event()
        state.connected.set()

    async def _apply_cutoffs(self, client: Any) -> None:
        """Apply every revocation cut-off kept in Redis; forget expired ones."""
        state = self.state
        if state.on_cutoff is None:
            return
        now = time.time()
        for field, value in (await client.hgetall(lua.CUTOFFS)).items():
            try:
                sub, client_id = json.loads(field)
                issued_before, keep_until = json.loads(value)
            except (ValueError, TypeError):
                await client.hdel(lua.CUTOFFS, [field])
                continue
            if keep_until < now:
                await client.hdel(lua.CUTOFFS, [field])
                continue
            await state.on_cutoff({"sub": sub, "client_id": client_id, "issued_before": issued_before})

    def _report_all(self) -> None:
        state = self.state
        hub = state.hub
        if hub is None:
            return
        for channel in hub.channels():
            state.dirty.setdefault(channel, set()).update(hub.local_members(channel))
        state.flush_wake.set()

    async def _heartbeat(self) -> None:
        state = self.state
        every = state.node_ttl / 4
        script = state.scripts["heartbeat"]
        while True:
            fresh, reaped = await script(args=[
                state.node, int(state.node_ttl * 1000), int(state.idle_ttl * 1000),
                int(time.time() - REVOCATION_GRACE), "0"])
            if int(reaped):
                log.info("broker: removed %d dead node(s) and their presence", int(reaped))
            if int(fresh) and state.hub is not None and state.hub.channel_count:
                log.info("broker: node %s was not registered (reaped or Redis restarted); reporting again", state.node)
                self._report_all()
            await trio.sleep(every)

    async def _flusher(self) -> None:
        """Send queued revocations and presence/count reports."""
        state = self.state
        revoke = state.scripts["revoke"]
        report = state.scripts["report"]
        ttl = int(state.idle_ttl * 1000)
        while True:
            await state.flush_wake.wait()
            state.flush_wake = trio.Event()
            while state.revocations:
                jti, exp = state.revocations[0]
                await revoke(args=[state.node, exp, jti])
                state.revocations.popleft()
            hub = state.hub
            while state.dirty and hub is not None:
                channel, subs = state.dirty.popitem()
                rule = hub.rule_for(channel)
                track = rule is not None and (rule.presence or rule.join_leave)
                jl = "1" if rule is not None and rule.join_leave else "0"
                args: list[Any] = [state.node, as_bytes(channel), 0, jl, ttl]
                total = 0
                for sub in subs:
                    count, total = hub.local_counts(channel, sub)
                    if track:
                        args += [as_bytes(sub), count]
                if not subs:
                    total = hub.local_counts(channel, "")[1]
                args[2] = total
                try:
                    state.reported(channel, await report(args=args))
                except BaseException:
                    state.dirty.setdefault(channel, set()).update(subs)
                    raise


def _reason(exc: BaseException) -> str:
    """The first leaf of an exception group, as text."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
