"""ChannelRules as a value: built from one snapshot, replaced whole on a
reload (so nothing cached under the old rules survives)."""

from __future__ import annotations

import pytest

from realtime.config.settings import ChannelRule, WebSocketSettings
from realtime.hub import DEFAULT_PRESENCE_LIMIT, ChannelRules, HubError
from tests.helpers.hub import RULES, FakeConn, make_hub


def test_lookups_and_checks() -> None:
    rules = ChannelRules(RULES, WebSocketSettings())
    assert rules.rule_for("chat:1") is RULES[0] and rules.rule_for("nope") is None
    assert rules.history_for("chat:1") == 5 and rules.history_for("nope") == 0
    assert rules.announces("room:1") and not rules.announces("chat:1")
    assert rules.presence_limit == DEFAULT_PRESENCE_LIMIT
    assert ChannelRules(RULES, WebSocketSettings(max_presence_members=3)).presence_limit == 3
    rules.check_presence("room:1", "bob", frozenset({"chat:read"}))
    with pytest.raises(HubError) as info:
        rules.check_presence("chat:1", "bob", frozenset({"chat:read"}))
    assert info.value.code == "presence_disabled"
    with pytest.raises(HubError) as info:
        rules.check_presence("user:alice", "alice", frozenset())  # own channel, but no presence
    assert info.value.code == "presence_disabled"


def test_reload_replaces_the_rules_and_their_cache() -> None:
    hub = make_hub()
    before = hub.rules
    assert hub.rule_for("chat:1") is RULES[0] and before.is_cached("chat:1")
    conn = FakeConn("alice")
    hub.subscribe(conn, "chat:1")
    narrower = (ChannelRule("chat:*", "chat:admin", "chat:write", history=2),)
    removed = hub.update_rules(narrower, WebSocketSettings())
    assert [(c is conn, ch) for c, ch in removed] == [(True, "chat:1")]
    assert hub.rules is not before and not hub.rules.is_cached("nope:1")
    assert hub.rule_for("chat:1") is narrower[0]
    assert before.rule_for("chat:1") is RULES[0]  # the old value is untouched
