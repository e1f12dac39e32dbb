"""The loop every poll of the shared store runs on.

A node on a shared store reads what other nodes wrote (signing keys,
provider-created users, revocations) every few tenths of a second.  Each
poll is the same loop around its own step: sleep, read, apply; when the
database is away, say so once (not at every tick) and try again at the
next one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

__all__ = ["poll_store"]


async def poll_store(log: logging.Logger, what: str, interval: float, step: Callable[[], Awaitable[None]], *,
                     errors: tuple[type[Exception], ...] = (OSError,), say_recovered: bool = False) -> None:
    """Run ``step`` every ``interval`` seconds, for ever.

    A failure in ``errors`` (the database down) is logged once, as
    "cannot read ``what`` in the store", and the step runs again at the
    next tick; with ``say_recovered`` the first success after it is
    logged too.
    """
    failing = False
    while True:
        await trio.sleep(interval)
        try:
            await step()
        except errors as exc:
            if not failing:
                log.error("cannot read %s in the store: %s", what, exc)
            failing = True
            continue
        if failing and say_recovered:
            log.info("reading %s in the store again", what)
        failing = False
