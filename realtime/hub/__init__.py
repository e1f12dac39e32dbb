"""Channels: who may subscribe and publish, and the fan-out (SPEC §4, §5, §5a).

Sans-I/O and synchronous: nothing here awaits.  A publish checks the
scope, encodes ``data`` once, lets the broker number and frame it once,
then offers the same bytes to every subscriber in a plain loop
(DESIGN.md §4).  No subscriber can hold that loop up: ``offer`` never
blocks, and a session that cannot keep up closes itself with 4009.

Rules
-----

- A channel name matches the first ``[[channel]]`` pattern
  (``fnmatch.fnmatchcase``, so case matters).  Subscribing needs its
  ``subscribe_scope``, publishing its ``publish_scope``; a scope of
  ``None`` lets any token in.
- ``user:<sub>`` is always subscribable by that ``sub``, with or without a
  rule, and by nobody else, whatever rules or scopes say (SPEC §5: a user's
  notifications are private).  Publishing to it needs a rule that matches
  it, e.g. ``pattern = "user:*"`` with ``publish_scope = "notify"``; with
  no such rule nobody can publish to it.  Without a rule it keeps no
  history.
- A channel name must pass :func:`realtime.protocol.messages.channel_problem`
  (non-empty, at most ``[websocket] max_channel_name`` characters, no
  control characters), whether it came over WebSocket or
  ``/api/publish``.
- Subscribing to a channel the connection is already on is a no-op that
  succeeds (ack, no second delivery, no replay).  Unsubscribing from a
  channel it is not on also succeeds (``unsubscribe`` returns ``False``).
- A connection may hold ``[websocket] max_subscriptions`` subscriptions.
- A publisher subscribed to the channel receives its own message.

Recovery (``since``)
--------------------

``seq`` starts at 1 per channel and rises by one per publish.  A
``subscribe`` with ``since`` returns, as :attr:`SubscribeResult.replay`,
the kept messages with ``seq > since`` in order, already framed, and
:attr:`SubscribeResult.recovered`:

- ``True``: the replay is every message after ``since``; nothing missed.
  Also when ``since`` equals the newest ``seq`` (nothing to replay).
- ``False``: messages after ``since`` were published but are no longer
  kept (``since < oldest kept seq - 1``, or the channel keeps no history;
  the in-process broker also evicts by bytes: ``history_bytes`` per
  channel, ``[websocket] max_history_bytes`` across channels);
  what is kept is still replayed.  Also ``False`` when ``since`` is *above*
  the newest ``seq``: this numbering never issued it, so the client's
  position is from before a server restart (or a forgotten idle channel)
  and it may have missed anything.  The client should resynchronise from
  its own source of truth and continue from the ``seq`` it now receives.

The session reports this in the ``ack`` of the ``subscribe``:
``{"type":"ack","id":...,"recovered":false}``.  A ``subscribe`` with
``since`` is always answered with that ``ack``, even without an ``id``
(then the ``ack`` has no ``id``), so the answer is never lost.  Why not an
``error`` (e.g. ``history_gap``)?  An ``error`` carrying the request's
``id`` tells the client the request *failed*, but the subscription
succeeded: live messages follow.  One ``ack`` with a flag says both things.

The session must send, with no ``await`` in between: the ``ack``, then
every frame of ``replay``, then return to reading.  Because the hub is
synchronous, no live message can slip in between the subscription and its
replay, so live messages follow the replay with no gap or duplicate.

Presence (SPEC §5a)
-------------------

The hub counts each channel's subscribed connections per ``sub``.  With
``join_leave = true`` it offers ``join`` to the other subscribers when a
``sub``'s first connection subscribes and ``leave`` when its last one goes
(unsubscribe, close via :meth:`Hub.drop`, or :meth:`Hub.revalidate`).
Joins and leaves have no ``seq`` and are not kept.  The leave of a
``sub`` that joined less than ``[websocket] join_leave_debounce`` ago
(default 500 ms; :mod:`realtime.hub.held`) is held for that window: if
the same ``sub`` subscribes again within it, neither the leave nor the
join is sent, so subscribe/unsubscribe churn costs the listeners nothing;
otherwise it goes out when the window ends (:meth:`Hub.tick`).
``presence`` is a snapshot of who is subscribed: it lists only subs with
a live connection, not one whose leave is held.  A member that stayed
longer gets its leave sent at once.  ``presence`` needs the
channel's subscribe permission and ``presence = true`` (else code
``presence_disabled``).  A member list holds at most ``[websocket]
max_presence_members`` entries (default 1000); past that the answer says
``"truncated": true`` and lists that many, so a channel with 100,000
members costs one bounded slice, never a walk of the whole set.

With a remote broker (``[broker] url``) the hub does not announce joins and
leaves itself: it reports each change of a ``sub``'s local connection count
to the broker (:meth:`RemoteBroker.report`), which merges the counts of
every node in Redis and sends ``join``/``leave`` through the channel's
fan-out on every node (:meth:`Hub.deliver_event`), once per event; the
``presence`` answer then comes from Redis too (``Hub.presence_async``).

Remote brokers
--------------

A remote broker needs a round trip to number a message or to read
history, so the shell uses :meth:`Hub.publish_async`,
:meth:`Hub.subscribe_async` and :meth:`Hub.presence_async` when
``hub.remote`` is true.  The in-process path is untouched: ``publish`` and
``subscribe`` stay synchronous and no coroutine is created for them.
``subscribe_async`` awaits the broker first (subscribe in Redis, read the
replay), then calls the synchronous ``subscribe`` with that replay and no
``await`` in between, so the exactness argument above still holds.

Error codes raised here as :class:`HubError` are listed with the parser's
in :mod:`realtime.protocol.messages`.

Layout
------

:class:`Hub` (``hub``: publishing, the fan-out, reloads; the face callers
use) holds its parts as values: its ``Subscriptions`` (``subscriptions``:
subscribe, leave, revalidate, the remote subscribe round trip), its
``Presence`` (``presence``: join/leave announcements, the held-leave tick,
presence answers), a :class:`ChannelRules`
(``rules``: ``[[channel]]`` matching and the subscribe/publish/presence
checks; replaced whole on a reload), the subscription ``tables`` (per
channel and per connection, member counts, the fan-out snapshot), a
:class:`ConnectionIndex` (``index``) and a broker.  ``broker`` holds the
seam (``paths`` says which kind a path needs): the synchronous :class:`Broker` (``inprocess`` has
:class:`InProcessBroker`) and the asynchronous :class:`RemoteBroker`
(:class:`realtime.net.redis.broker.RedisBroker`).  ``results`` holds what
the hub answers (:class:`HubError`, :class:`SubscribeResult`,
:class:`PublishResult`).
"""

from __future__ import annotations

from realtime.hub.broker import Broker, BrokerUnavailable, ChannelFeed, HubView, RemoteBroker, Replay
from realtime.hub.hub import Hub
from realtime.hub.index import Connection, ConnectionIndex
from realtime.hub.inprocess import InProcessBroker
from realtime.hub.results import HubError, PublishResult, SubscribeResult
from realtime.hub.rules import DEFAULT_PRESENCE_LIMIT, USER_PREFIX, ChannelRules

__all__ = [
    "DEFAULT_PRESENCE_LIMIT",
    "USER_PREFIX",
    "Broker",
    "BrokerUnavailable",
    "ChannelFeed",
    "ChannelRules",
    "Connection",
    "ConnectionIndex",
    "Hub",
    "HubError",
    "HubView",
    "InProcessBroker",
    "PublishResult",
    "RemoteBroker",
    "Replay",
    "SubscribeResult",
]
