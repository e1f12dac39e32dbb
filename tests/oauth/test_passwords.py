"""argon2 runs through the injected offload: in a worker thread, never on
the event loop, at most ``ARGON2_THREADS`` at once (DESIGN.md §6)."""

from __future__ import annotations

import threading
import time

import trio

from realtime.net.workers import ARGON2_THREADS, thread_offload
from realtime.oauth import passwords
from realtime.oauth.passwords import Hasher


async def test_argon2_runs_in_worker_threads_behind_the_limiter(monkeypatch) -> None:
    lock = threading.Lock()
    running = peak = 0
    on_loop: list[bool] = []

    def slow_verify(hashed: str | None, secret: str) -> bool:
        nonlocal running, peak
        on_loop.append(threading.current_thread() is threading.main_thread())
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return secret == "right"

    monkeypatch.setattr(passwords, "verify_secret", slow_verify)
    hasher = Hasher(thread_offload(trio.CapacityLimiter(ARGON2_THREADS)))
    results: list[bool] = []

    async def one(secret: str) -> None:
        results.append(await hasher.verify("$argon2id$...", secret))

    async with trio.open_nursery() as nursery:
        for i in range(6):
            nursery.start_soon(one, "right" if i % 2 else "wrong")
    assert sorted(results) == [False] * 3 + [True] * 3
    assert on_loop == [False] * 6
    assert peak == ARGON2_THREADS
