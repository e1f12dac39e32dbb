"""Which broker a hub path needs, and the refusal when a remote one is down.

A hub holds exactly one kind of broker (see :mod:`realtime.hub.broker`)
and picks its paths by it once: the synchronous ``publish`` and
``subscribe`` need the in-process kind, the ``*_async`` ones the remote
kind.  The publishing side (:mod:`realtime.hub.hub`), the subscribing
side (:mod:`realtime.hub.subscriptions`) and presence
(:mod:`realtime.hub.presence`) each check which kind they hold and refuse
the same way, so the check and the refusal are written here once.
"""

from __future__ import annotations

from typing import TypeVar

from realtime.hub.broker import Broker, RemoteBroker
from realtime.hub.results import HubError

__all__ = ["serving", "unavailable"]

B = TypeVar("B", Broker, RemoteBroker)


def unavailable() -> HubError:
    return HubError("unavailable", "the message broker is unreachable; try again")


def serving(broker: B | None, misuse: str) -> B:
    """``broker`` when the hub holds that kind; else the caller took the
    other kind's path (``hub.remote`` says which), a programming error."""
    if broker is None:
        raise TypeError(misuse)
    return broker
