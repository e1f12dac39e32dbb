"""The hub's clock tick: held ``leave`` events go out when their window ends.

The hub is sans-I/O (:meth:`realtime.hub.Hub.tick`); it also ticks on each
subscribe and presence, but on a quiet channel something has to call it.
A few calls a second cost nothing when no leave is held.
"""

from __future__ import annotations

import trio

from realtime.api.app import App

MIN_PERIOD = 0.05
MAX_PERIOD = 0.5


def tick_period(window: float) -> float:
    """A quarter of the debounce window, kept between 50 ms and 0.5 s, so a
    held leave is late by at most that much."""
    return min(MAX_PERIOD, max(MIN_PERIOD, window / 4))


async def hub_tick(state: App) -> None:
    """Tick ``state.hub`` for ever (the window is re-read after a reload)."""
    while True:
        await trio.sleep(tick_period(state.settings.websocket.join_leave_debounce))
        state.hub.tick()
