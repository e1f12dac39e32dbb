"""Webhook delivery (SPEC §12): the trio shell around
:mod:`realtime.api.webhooks`.

:meth:`Webhooks.emit` is synchronous and cheap (an event built and put
in each hook's bounded lanes), so publishing, handshakes and hub events
never wait for a receiver.  Each lane of each hook has one task that
POSTs its events one at a time through httpx, with the hook's timeout
per attempt and the backoff between attempts; a slow or dead receiver
holds up only its own lane of its own hook.

Hooks are read at start (``[[webhook]]``); a reload that changes them
applies at the next start (logged).
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

import httpx
import trio

from realtime.api import webhooks as core
from realtime.config.settings import WebhookSettings

if TYPE_CHECKING:
    from realtime.api.app import App

__all__ = ["Webhooks"]

log = logging.getLogger("realtime.webhooks")


class Webhooks:
    """Every hook's outbox and its delivery tasks."""

    def __init__(self, app: "App", hooks: tuple[WebhookSettings, ...], *,
                 wall: Any = time.time, jitter: Any = random.random) -> None:
        self.app = app
        self.stats = app.webhook_stats
        self.outboxes = [core.Outbox(hook, self.stats) for hook in hooks]
        self.wakes = [[trio.Event() for _ in range(core.LANES)] for _ in hooks]
        self.wall = wall
        self.jitter = jitter
        self.wanted = frozenset(e for hook in hooks for e in hook.events)

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        """Queue an event for every hook that wants it; never blocks."""
        if type_ not in self.wanted:
            return
        event = core.build(type_, data, self.app.node, self.wall())
        for n, box in enumerate(self.outboxes):
            lane = box.put(event)
            if lane is not None:
                self.wakes[n][lane].set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver until cancelled (the server's root nursery)."""
        async with httpx.AsyncClient(follow_redirects=False) as client, trio.open_nursery() as nursery:
            for n, box in enumerate(self.outboxes):
                for lane in range(core.LANES):
                    nursery.start_soon(self._lane, client, n, box, lane)
            task_status.started()

    async def _lane(self, client: httpx.AsyncClient, n: int, box: core.Outbox, lane: int) -> None:
        while True:
            event = box.head(lane)
            if event is None:
                self.wakes[n][lane] = trio.Event()
                await self.wakes[n][lane].wait()
                continue
            await self._deliver(client, box.hook, event)
            box.done(lane)

    async def _deliver(self, client: httpx.AsyncClient, hook: WebhookSettings, event: core.Event) -> None:
        body = core.body_of(event)
        for attempt in range(1, hook.max_attempts + 1):
            if attempt > 1:
                self.stats.retries += 1
            status = await self._post(client, hook, event, body)
            verdict = core.outcome(status)
            if verdict == "done":
                self.stats.delivered += 1
                self.stats.latency_sum += max(0.0, self.wall() - event.time)
                self.stats.latency_count += 1
                return
            if verdict == "give_up" or attempt == hook.max_attempts:
                break
            await trio.sleep(core.backoff(attempt, self.jitter()))
        self.stats.failed += 1
        log.warning("webhook %s: gave up on event %s (%s) after %d attempt(s); last answer %s",
                    _shown(hook.url), event.id, event.type, attempt, status or "no answer")

    async def _post(self, client: httpx.AsyncClient, hook: WebhookSettings, event: core.Event,
                    body: bytes) -> int | None:
        headers = {
            "content-type": "application/json",
            "realtime-event-id": event.id,
            "realtime-signature": core.sign(hook.secret, int(self.wall()), body),
        }
        try:
            with trio.fail_after(hook.timeout):  # the whole attempt, however the peer trickles
                response = await client.post(hook.url, content=body, headers=headers, timeout=hook.timeout)
        except (trio.TooSlowError, httpx.HTTPError, OSError) as exc:
            log.info("webhook %s: event %s not delivered: %s", _shown(hook.url), event.id, type(exc).__name__)
            return None
        return response.status_code


def _shown(url: str) -> str:
    """The URL without its query (which may carry a token of the receiver's)."""
    return url.split("?", 1)[0]
