"""The connection to Redis for :class:`realtime.net.redis.broker.RedisBroker`:
the startup check, and the task that stays connected (with backoff),
rebuilds this node's state in Redis on every (re)connect, heartbeats,
and sends queued revocations and presence reports.
"""

from __future__ import annotations

import time
from typing import Any

import coredis
import trio
from coredis.retry import NoRetryPolicy

from realtime.net.redis import lua
from realtime.hub.broker import BrokerUnavailable
from realtime.net.redis.delivery import _Delivery
from realtime.net.redis.state import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    READY_TIMEOUT,
    REVOCATION_GRACE,
    _b,
    _s,
    log,
)


class _Connection(_Delivery):
    """The connection layer of :class:`realtime.net.redis.broker.RedisBroker`."""

    def _new_client(self) -> Any:
        # No retries inside coredis: a failed command answers "unavailable"
        # at once, and run() owns reconnecting (with its backoff and logs).
        return coredis.Redis.from_url(
            self.url, decode_responses=False, connect_timeout=2.0, stream_timeout=5.0,
            retry_policy=NoRetryPolicy(),
        )

    async def check(self) -> None:
        """Ping Redis once; at startup an unreachable broker is fatal.

        Raises:
            BrokerUnavailable: with the URL and the reason.
        """
        try:
            with trio.fail_after(5):
                async with self._new_client() as client:
                    await client.ping()
        except trio.TooSlowError:
            raise BrokerUnavailable(f"broker {self.url} is unreachable: no answer within 5s") from None
        except Exception as exc:  # coredis raises inside an ExceptionGroup here
            raise BrokerUnavailable(f"broker {self.url} is unreachable: {_reason(exc)}") from None

    # -- the connection task -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay connected: subscribe, deliver, heartbeat, report; reconnect
        with backoff.  Runs in the server's root nursery until cancelled."""
        started = False
        ever = False  # connected at least once
        backoff = BACKOFF_FIRST
        attempt = 0  # attempts since the last good connection
        try:
            while True:
                attempt += 1
                try:
                    async with self._new_client() as client:
                        self._client = client
                        self._scripts = {
                            "publish": client.register_script(lua.PUBLISH),
                            "seed": client.register_script(lua.SEED),
                            "report": client.register_script(lua.REPORT),
                            "heartbeat": client.register_script(lua.HEARTBEAT),
                            "revoke": client.register_script(lua.REVOKE),
                            "presence": client.register_script(lua.PRESENCE),
                        }
                        async with client.pubsub(
                            retry_policy=None, ignore_subscribe_messages=True,
                            subscription_timeout=READY_TIMEOUT, max_idle_seconds=max(1.0, self.node_ttl / 4),
                        ) as ps:
                            await self._connected(client, ps)
                            if ever:
                                log.info("broker: reconnected to %s (attempt %d); resubscribed %d channel(s)",
                                         self.url, attempt, len(self._watches))
                            else:
                                log.info("broker: connected to %s as node %s", self.url, self.node)
                            ever = True
                            attempt = 0
                            backoff = BACKOFF_FIRST
                            if not started:
                                started = True
                                task_status.started()
                            async with trio.open_nursery() as nursery:
                                nursery.start_soon(self._heartbeat)
                                nursery.start_soon(self._flusher)
                                nursery.start_soon(self._control, ps)
                                await self._pump(ps)
                except Exception as exc:  # ExceptionGroup from the pub/sub task group too
                    self._down()
                    reason = _reason(exc)
                    if attempt == 0:
                        log.warning("broker: lost connection to %s: %s", self.url, reason)
                    else:
                        log.warning("broker: cannot reach %s (attempt %d): %s; retrying in %.1fs",
                                    self.url, attempt, reason, backoff)
                self._down()
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                log.info("broker: reconnecting to %s", self.url)
        finally:
            self._down()
            await self._leave()

    async def _leave(self) -> None:
        """On shutdown: remove this node's presence at once (no waiting for
        the node_ttl), best effort."""
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                async with self._new_client() as client:
                    await client.register_script(lua.HEARTBEAT)(
                        args=[self.node, int(self.node_ttl * 1000), int(self.idle_ttl * 1000),
                              int(time.time() - REVOCATION_GRACE), "1"])
            except Exception:  # noqa: BLE001 - best effort; others reap us after node_ttl
                log.info("broker: could not remove node %s at shutdown; other nodes will after %.0fs",
                         self.node, self.node_ttl)

    def _down(self) -> None:
        if self._up:
            self.reconnects += 1
            self.lost.set()
        self._up = False
        self._client = None
        self.connected = trio.Event() if self.connected.is_set() else self.connected
        for w in self._watches.values():
            w.subscribed = False
            w.ready = False
            w.pending.clear()
            w.settled.set()  # wake waiting subscribes: they answer "unavailable"
            w.settled = trio.Event()
            if w.advanced is not None:
                w.advanced.set()
                w.advanced = None

    async def _connected(self, client: Any, ps: Any) -> None:
        """(Re)build everything this node holds in Redis, before any delivery."""
        await ps.subscribe(lua.REVOKE_CHANNEL)
        # Revocations made here while Redis was away go out first.
        while self._revocations:
            jti, exp = self._revocations[0]
            await client.register_script(lua.REVOKE)(args=[self.node, exp, jti])
            self._revocations.popleft()
        horizon = time.time() - REVOCATION_GRACE
        revoked = await client.zrangebyscore(lua.REVOKED, horizon, "+inf", withscores=True)
        if self.on_revoke is not None:
            for jti, exp in revoked:
                self.on_revoke(_s(jti), float(exp))
        self._up = True
        for channel in [c for c, w in self._watches.items() if not w.needed]:
            del self._watches[channel]
        if self._watches:
            await ps.subscribe(*(lua.PREFIX_CHANNEL + _b(c) for c in self._watches))
            for w in self._watches.values():
                w.subscribed = True
            for channel, w in list(self._watches.items()):
                await self._sync_watch(channel, w)
        # Presence and counts: report everything again (absolute values).
        self._report_all()
        self.lost = trio.Event()
        self.connected.set()

    def _report_all(self) -> None:
        hub = self._hub
        if hub is None:
            return
        for channel in hub.channels():
            self._dirty.setdefault(channel, set()).update(hub.local_members(channel))
        self._flush_wake.set()

    async def _heartbeat(self) -> None:
        every = self.node_ttl / 4
        script = self._scripts["heartbeat"]
        while True:
            fresh, reaped = await script(args=[
                self.node, int(self.node_ttl * 1000), int(self.idle_ttl * 1000),
                int(time.time() - REVOCATION_GRACE), "0"])
            if int(reaped):
                log.info("broker: removed %d dead node(s) and their presence", int(reaped))
            if int(fresh) and self._hub is not None and self._hub.channel_count:
                log.info("broker: node %s was not registered (reaped or Redis restarted); reporting again", self.node)
                self._report_all()
            await trio.sleep(every)

    async def _flusher(self) -> None:
        """Send queued revocations and presence/count reports."""
        revoke = self._scripts["revoke"]
        report = self._scripts["report"]
        ttl = int(self.idle_ttl * 1000)
        while True:
            await self._flush_wake.wait()
            self._flush_wake = trio.Event()
            while self._revocations:
                jti, exp = self._revocations[0]
                await revoke(args=[self.node, exp, jti])
                self._revocations.popleft()
            hub = self._hub
            while self._dirty and hub is not None:
                channel, subs = self._dirty.popitem()
                rule = hub.rule_for(channel)
                track = rule is not None and (rule.presence or rule.join_leave)
                jl = "1" if rule is not None and rule.join_leave else "0"
                args: list[Any] = [self.node, _b(channel), 0, jl, ttl]
                total = 0
                for sub in subs:
                    count, total = hub.local_counts(channel, sub)
                    if track:
                        args += [_b(sub), count]
                if not subs:
                    total = hub.local_counts(channel, "")[1]
                args[2] = total
                try:
                    await report(args=args)
                except BaseException:
                    self._dirty.setdefault(channel, set()).update(subs)
                    raise


def _reason(exc: BaseException) -> str:
    """The first leaf of an exception group, as text."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
