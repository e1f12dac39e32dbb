"""Channel rules: which ``[[channel]]`` a name matches and who may
subscribe or publish there (see "Rules" in :mod:`realtime.hub`)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

from realtime.hub.results import HubError
from realtime.config.settings import ChannelRule, WebSocketSettings
from realtime.protocol import messages as protocol

USER_PREFIX = "user:"
_MISS: Any = object()

_Matcher = Callable[[str], "re.Match[str] | None"]


class ChannelRules:
    """The rule lookups and permission checks of :class:`realtime.hub.Hub`.

    A mixin of :class:`realtime.hub.Hub`, whose constructor sets ``_cache``
    and ``_cache_size`` and calls :meth:`_set_rules`.
    """

    _cache_size: int
    _cache: dict[str, ChannelRule | None]

    def _set_rules(self, rules: tuple[ChannelRule, ...], ws: WebSocketSettings) -> None:
        self.rules = tuple(rules)
        self.ws = ws
        # fnmatchcase(name, pat) is re.match(translate(pat), name); compile
        # once per reload instead of looking patterns up per call.
        self._matchers: list[tuple[_Matcher, ChannelRule]] = [
            (re.compile(fnmatch.translate(rule.pattern)).match, rule) for rule in self.rules
        ]
        self._cache.clear()

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
        # Only valid names are cached: a cache hit in _rule() skips the
        # name check.
        if protocol.channel_problem(channel, self.ws.max_channel_name) is None:
            self._remember(channel, rule)
        return rule

    def _remember(self, channel: str, rule: ChannelRule | None) -> None:
        cache = self._cache
        if len(cache) >= self._cache_size:
            # Oldest first; clients invent names, so the cache must not grow.
            del cache[next(iter(cache))]
        cache[channel] = rule

    def _rule(self, channel: str) -> ChannelRule | None:
        """:meth:`rule_for` after checking the name (cache hits are valid)."""
        rule = self._cache.get(channel, _MISS)
        if rule is not _MISS:
            return rule  # type: ignore[no-any-return]
        problem = protocol.channel_problem(channel, self.ws.max_channel_name)
        if problem is not None:
            raise HubError("bad_channel", problem)
        return self.rule_for(channel)

    def _history_for(self, channel: str) -> int:
        rule = self.rule_for(channel)
        return 0 if rule is None else max(rule.history, 0)

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
        rule = self._rule(channel)
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
        rule = self._rule(channel)
        if rule is None:
            if channel.startswith(USER_PREFIX):
                raise HubError("forbidden", "no channel rule allows publishing here")
            raise HubError("unknown_channel", "no channel rule matches this name")
        scope = rule.publish_scope
        if scope is not None and scope not in scopes:
            raise HubError("forbidden", f"publishing needs scope {scope}")
        return rule
