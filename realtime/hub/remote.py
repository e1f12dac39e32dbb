"""The seam to a networked broker (see "Remote brokers" in :mod:`realtime.hub`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from realtime.hub.broker import Broker, Replay

if TYPE_CHECKING:
    from realtime.hub.core import Hub


class RemoteBroker(Broker, Protocol):
    """What :class:`Hub` needs beyond :class:`Broker` from a networked broker."""

    def attach(self, hub: "Hub") -> None:
        """Called once by the hub: deliveries, events and counts come from it."""
        ...

    async def publish_async(self, channel: str, from_sub: str, data_json: bytes, keep: int) -> tuple[int, int]:
        """:meth:`Broker.publish` over the network; ``delivered`` counts every node."""
        ...

    async def prepare(self, channel: str, since: int | None) -> Replay:
        """Make sure ``channel`` reaches this node; return its replay.

        The replay ends at this node's delivery position for the channel
        at the moment it returns, so a synchronous ``subscribe`` right
        after it sees no gap and no duplicate.
        """
        ...

    def hold(self, channel: str) -> None:
        """Keep ``channel`` subscribed while a ``prepare`` is under way."""
        ...

    def release(self, channel: str) -> None:
        ...

    def report(self, channel: str, sub: str) -> None:
        """``sub``'s local connection count on ``channel`` changed (sync, queued)."""
        ...

    async def report_now(self, channel: str, sub: str, count: int, total: int) -> None:
        """Write ``sub``'s coming count before its subscribe is answered, so
        the ``join`` and the presence list are there when the ``ack`` is."""
        ...

    async def presence(self, channel: str, limit: int) -> tuple[list[tuple[str, int]], bool]:
        """Members across nodes, at most ``limit``, and whether cut."""
        ...
