"""Channel rules: which ``[[channel]]`` a name matches and who may
subscribe, publish or ask for presence there (see "Rules" in
:mod:`realtime.hub`).

:class:`ChannelRules` is a value built from one configuration snapshot.
The hub holds one and replaces it whole on a reload, so a lookup never
sees half of an old rule list and half of a new one, and the lookup cache
starts empty with the rules it caches.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

from realtime.config.settings import ChannelRule, WebSocketSettings
from realtime.hub.results import HubError
from realtime.protocol import messages

__all__ = ["DEFAULT_PRESENCE_LIMIT", "USER_PREFIX", "ChannelRules"]

USER_PREFIX = "user:"
DEFAULT_PRESENCE_LIMIT = 1000

_MISS: Any = object()

Matcher = Callable[[str], "re.Match[str] | None"]


class ChannelRules:
    """One reload's ``[[channel]]`` list and ``[websocket]`` limits, with
    the rule lookups and permission checks the hub makes.

    Args:
        rules: the ``[[channel]]`` tables, in file order.
        ws: the ``[websocket]`` settings (name length, presence cap).
        cache_size: channel names whose rule lookup is remembered.
    """

    __slots__ = ("rules", "ws", "_matchers", "_cache", "_cache_size")

    def __init__(self, rules: tuple[ChannelRule, ...], ws: WebSocketSettings, cache_size: int = 4096) -> None:
        self.rules = tuple(rules)
        self.ws = ws
        # fnmatchcase(name, pat) is re.match(translate(pat), name); compile
        # once per reload instead of looking patterns up per call.
        self._matchers: list[tuple[Matcher, ChannelRule]] = [
            (re.compile(fnmatch.translate(rule.pattern)).match, rule) for rule in self.rules
        ]
        self._cache: dict[str, ChannelRule | None] = {}
        self._cache_size = cache_size

    @property
    def cached(self) -> int:
        """How many names the lookup cache holds (bounded by ``cache_size``)."""
        return len(self._cache)

    def is_cached(self, channel: str) -> bool:
        return channel in self._cache

    @property
    def presence_limit(self) -> int:
        """The most members one presence answer lists."""
        return int(getattr(self.ws, "max_presence_members", DEFAULT_PRESENCE_LIMIT))

    def rule_for(self, channel: str) -> ChannelRule | None:
        """The first rule whose pattern matches ``channel``, or ``None``."""
        rule = self._cache.get(channel, _MISS)
        if rule is not _MISS:
            return rule  # type: ignore[no-any-return]
        rule = None
        for match, candidate in self._matchers:
            if match(channel) is not None:
                rule = candidate
                break
        # Only valid names are cached: a cache hit in _checked_rule() skips
        # the name check.
        if messages.channel_problem(channel, self.ws.max_channel_name) is None:
            self._remember(channel, rule)
        return rule

    def _remember(self, channel: str, rule: ChannelRule | None) -> None:
        cache = self._cache
        if len(cache) >= self._cache_size:
            # Oldest first; clients invent names, so the cache must not grow.
            del cache[next(iter(cache))]
        cache[channel] = rule

    def _checked_rule(self, channel: str) -> ChannelRule | None:
        """:meth:`rule_for` after checking the name (cache hits are valid)."""
        rule = self._cache.get(channel, _MISS)
        if rule is not _MISS:
            return rule  # type: ignore[no-any-return]
        problem = messages.channel_problem(channel, self.ws.max_channel_name)
        if problem is not None:
            raise HubError("bad_channel", problem)
        return self.rule_for(channel)

    def history_for(self, channel: str) -> int:
        """How many messages ``channel`` keeps (0 without a rule)."""
        rule = self.rule_for(channel)
        return 0 if rule is None else max(rule.history, 0)

    def history_bytes_for(self, channel: str) -> int:
        """How many bytes of frames ``channel`` keeps (``history_bytes``)."""
        rule = self.rule_for(channel)
        return 0 if rule is None else max(rule.history_bytes, 0)

    def announces(self, channel: str) -> bool:
        """Does ``channel`` send ``join``/``leave`` (``join_leave = true``)?"""
        rule = self.rule_for(channel)
        return rule is not None and rule.join_leave

    def allows_any_channel(self, scopes: frozenset[str]) -> bool:
        """May a token with ``scopes`` subscribe or publish anywhere?

        The handshake answers 403 when not (SPEC §4).  The token's own
        ``user:<sub>`` does not count, so a rule whose pattern starts with
        ``user:`` counts only through its ``publish_scope``.
        """
        for rule in self.rules:
            if rule.publish_scope is None or rule.publish_scope in scopes:
                return True
            if not rule.pattern.startswith(USER_PREFIX) and (
                rule.subscribe_scope is None or rule.subscribe_scope in scopes
            ):
                return True
        return False

    def check_subscribe(self, channel: str, sub: str, scopes: frozenset[str]) -> ChannelRule | None:
        """Raise :class:`HubError` unless ``sub`` with ``scopes`` may subscribe.

        Returns the channel's rule (``None`` only for the caller's own
        ``user:<sub>`` without a rule).  ``/api/presence`` uses it too.
        """
        rule = self._checked_rule(channel)
        if channel.startswith(USER_PREFIX):
            if channel[len(USER_PREFIX):] != sub:
                raise HubError("forbidden", "user channels are private to their user")
            return rule
        if rule is None:
            raise HubError("unknown_channel", "no channel rule matches this name")
        scope = rule.subscribe_scope
        if scope is not None and scope not in scopes:
            raise HubError("forbidden", f"subscribing needs scope {scope}")
        return rule

    def check_publish(self, channel: str, scopes: frozenset[str]) -> ChannelRule:
        """Raise :class:`HubError` unless ``scopes`` may publish to ``channel``."""
        rule = self._checked_rule(channel)
        if rule is None:
            if channel.startswith(USER_PREFIX):
                raise HubError("forbidden", "no channel rule allows publishing here")
            raise HubError("unknown_channel", "no channel rule matches this name")
        scope = rule.publish_scope
        if scope is not None and scope not in scopes:
            raise HubError("forbidden", f"publishing needs scope {scope}")
        return rule

    def check_presence(self, channel: str, sub: str, scopes: frozenset[str]) -> None:
        """Raise :class:`HubError` unless ``sub`` may ask who is on ``channel``:
        what :meth:`check_subscribe` raises, or ``presence_disabled``."""
        rule = self.check_subscribe(channel, sub, scopes)
        if rule is None or not rule.presence:
            raise HubError("presence_disabled", "presence is not enabled for this channel")
