"""Revocation cut-offs (POST /api/revoke): durable rows, the refresh
families they revoke, and their sweep."""

from __future__ import annotations

import attrs

from realtime.store import token_hash
from tests.helpers.store import NOW, OpenStore, issued


def test_a_cutoff_revokes_older_families_of_that_sub_and_is_kept(open_store: OpenStore) -> None:
    store = open_store()
    store.record_issue(NOW - 10, issued("a-old", refresh="old"))
    store.record_issue(NOW - 5, attrs.evolve(issued("a-other", refresh="other"), client_id="other-app"))
    store.record_issue(NOW - 5, attrs.evolve(issued("a-bob", refresh="bob"), sub="bob"))
    store.record_issue(NOW + 5, issued("a-new", refresh="new"))  # after the cut-off

    families, pairs = store.add_cutoff("alice", "app", NOW, NOW + 3600, NOW)
    assert families == 1 and pairs == [("a-old", NOW + 900)]
    assert store.get_refresh(token_hash("old")).family_revoked
    assert not store.get_refresh(token_hash("other")).family_revoked  # another app
    assert not store.get_refresh(token_hash("bob")).family_revoked
    assert not store.get_refresh(token_hash("new")).family_revoked
    assert store.is_revoked("a-old")
    # Every app of alice; the family already revoked is not counted again.
    assert store.add_cutoff("alice", "", NOW, NOW + 3600, NOW)[0] == 1
    assert store.get_refresh(token_hash("other")).family_revoked

    store.close()
    again = open_store()
    assert sorted(again.live_cutoffs(NOW)) == [("alice", "", NOW, NOW + 3600), ("alice", "app", NOW, NOW + 3600)]
    # An earlier cut-off for the same pair changes nothing; a later one wins.
    again.add_cutoff("alice", "app", NOW - 100, NOW, NOW)
    again.add_cutoff("alice", "", NOW + 50, NOW + 7200, NOW)
    assert sorted(again.live_cutoffs(NOW)) == [("alice", "", NOW + 50, NOW + 7200), ("alice", "app", NOW, NOW + 3600)]
    # Swept once no token they refuse can be valid.
    assert again.cutoffs_sweep(NOW + 7200 + 3600) == {"cutoffs": 2}
    assert again.live_cutoffs(NOW) == []
