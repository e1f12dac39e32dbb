"""Held ``leave`` events: the join/leave debounce.

A ``sub`` that leaves a ``join_leave`` channel and comes back within
``[websocket] join_leave_debounce`` should not cost every listener a
``leave`` and a ``join``: a subscribe/unsubscribe loop would otherwise be
an N-fold broadcast open to anyone with the subscribe scope.  So the leave
of a sub that joined less than a window ago is held for the window; a
rejoin inside it cancels the pair (nothing is sent), and otherwise the
leave goes out when the window ends (:meth:`realtime.hub.Hub.tick`).  A
member that stayed longer than the window is no churn: its leave goes out
at once, as SPEC §5a describes.

Pure bookkeeping with the time passed in: nothing here reads a clock.
"""

from __future__ import annotations

__all__ = ["HeldLeaves"]


class HeldLeaves:
    """``(channel, sub)`` leaves not sent yet, with when each is due."""

    __slots__ = ("_due", "_by_channel", "_joined")

    def __init__(self) -> None:
        # Insertion order is (nearly) due order: one window for all.
        self._due: dict[tuple[str, str], float] = {}
        self._by_channel: dict[str, dict[str, None]] = {}
        # When each present sub (last) joined each channel: a leave soon
        # after a join is what churn looks like.
        self._joined: dict[str, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self._due)

    def joined(self, channel: str, sub: str, now: float) -> None:
        """Note that ``sub``'s first connection joined ``channel`` at ``now``."""
        self._joined.setdefault(channel, {})[sub] = now

    def joined_within(self, channel: str, sub: str, now: float, window: float) -> bool:
        """Whether ``sub`` (now gone from ``channel``) joined it less than
        ``window`` ago; forgets the join either way."""
        subs = self._joined.get(channel)
        at = subs.pop(sub, None) if subs is not None else None
        if subs is not None and not subs:
            del self._joined[channel]
        return at is not None and now - at < window

    def hold(self, channel: str, sub: str, due: float) -> None:
        self._due[channel, sub] = due
        self._by_channel.setdefault(channel, {})[sub] = None

    def cancel(self, channel: str, sub: str) -> bool:
        """Forget a held leave (the sub is back); ``False`` if none was held."""
        if self._due.pop((channel, sub), None) is None:
            return False
        self._forget_sub(channel, sub)
        return True

    def discard_channel(self, channel: str) -> None:
        self._joined.pop(channel, None)
        for sub in self._by_channel.pop(channel, {}):
            del self._due[channel, sub]

    def take_due(self, now: float) -> list[tuple[str, str]]:
        """Remove and return the leaves due at ``now``, oldest first."""
        if not self._due:
            return []
        due = []
        for key, at in self._due.items():
            if at > now:
                break  # the rest were held later (a reload may blur this by one window)
            due.append(key)
        for key in due:
            del self._due[key]
            self._forget_sub(*key)
        return due

    def _forget_sub(self, channel: str, sub: str) -> None:
        subs = self._by_channel[channel]
        del subs[sub]
        if not subs:
            del self._by_channel[channel]
