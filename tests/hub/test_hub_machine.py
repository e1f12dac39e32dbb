"""Hypothesis: arbitrary interleavings keep order, ``seq`` and ``since``
exact against a model of SPEC §5."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.helpers.hub import FakeConn, make_hub, msg, replay_into


# -- hypothesis: arbitrary interleavings keep order, seq and since exact --------------

CHANNELS = ("chat:a", "chat:b", "open:c")
HISTORY = {"chat:a": 5, "chat:b": 5, "open:c": 0}
N_CONNS = 4


class HubMachine(RuleBasedStateMachine):
    """A model that knows only SPEC §5, beside the real hub.

    The model keeps every message ever published per channel and what each
    connection should have received; after every step the frames each fake
    connection got must equal that exactly.
    """

    @initialize()
    def setup(self) -> None:
        self.hub = make_hub()
        self.published: dict[str, list[int]] = {ch: [] for ch in CHANNELS}  # data per seq
        self.conns = [FakeConn(f"u{i}") for i in range(N_CONNS)]
        self.on: list[set[str]] = [set() for _ in range(N_CONNS)]
        self.expected: list[list[dict[str, Any]]] = [[] for _ in range(N_CONNS)]
        self.counter = 0

    def _kept(self, channel: str) -> list[int]:
        last = len(self.published[channel])
        return list(range(max(1, last - HISTORY[channel] + 1), last + 1))

    def _model_replay(self, channel: str, since: int) -> tuple[list[int], bool]:
        last = len(self.published[channel])
        missed = [s for s in range(since + 1, last + 1)]
        kept = [s for s in self._kept(channel) if s > since]
        return kept, since <= last and kept == missed

    def _subscribe(self, i: int, channel: str, since: int | None) -> None:
        conn = self.conns[i]
        result = self.hub.subscribe(conn, channel, since)
        last = len(self.published[channel])
        assert result.seq == last
        if channel in self.on[i]:
            assert not result.new and result.replay == [] and result.recovered
            return
        assert result.new
        self.on[i].add(channel)
        if since is None:
            assert result.replay == [] and result.recovered
        else:
            seqs_, recovered = self._model_replay(channel, since)
            assert result.recovered is recovered
            # Independently of the model: replayed seqs are consecutive and
            # end at the head; recovered means they start right after since.
            got = [json.loads(f[2:] if f[1] < 126 else f[4:])["seq"] for f in result.replay]
            assert got == list(range(last - len(got) + 1, last + 1))
            if recovered:
                assert got == list(range(since + 1, last + 1))
            else:
                assert since > last or not got or got[0] > since + 1
            for s in seqs_:
                self.expected[i].append(msg(channel, s, self.published[channel][s - 1], "pub"))
            replay_into(conn, result)

    @rule(i=st.integers(0, N_CONNS - 1), channel=st.sampled_from(CHANNELS))
    def subscribe(self, i: int, channel: str) -> None:
        self._subscribe(i, channel, None)

    @rule(
        i=st.integers(0, N_CONNS - 1),
        channel=st.sampled_from(CHANNELS),
        back=st.integers(-2, 9),
    )
    def subscribe_since(self, i: int, channel: str, back: int) -> None:
        since = max(0, len(self.published[channel]) - back)
        self._subscribe(i, channel, since)

    @rule(i=st.integers(0, N_CONNS - 1), channel=st.sampled_from(CHANNELS))
    def unsubscribe(self, i: int, channel: str) -> None:
        assert self.hub.unsubscribe(self.conns[i], channel) is (channel in self.on[i])
        self.on[i].discard(channel)

    @rule(channel=st.sampled_from(CHANNELS), n=st.integers(1, 4))
    def publish(self, channel: str, n: int) -> None:
        for _ in range(n):
            self.counter += 1
            result = self.hub.publish(
                channel, self.counter, from_sub="pub", scopes=frozenset({"chat:write"})
            )
            self.published[channel].append(self.counter)
            assert result.seq == len(self.published[channel])
            receivers = [i for i in range(N_CONNS) if channel in self.on[i]]
            assert result.delivered == len(receivers)
            for i in receivers:
                self.expected[i].append(msg(channel, result.seq, self.counter, "pub"))

    @rule(i=st.integers(0, N_CONNS - 1))
    def reconnect(self, i: int) -> None:
        """Drop connection i; a new one resumes each channel from its last seq."""
        old = self.conns[i]
        seen: dict[str, int] = {}
        for m in old.take():
            seen[m["channel"]] = m["seq"]
        # Everything received so far was checked by the invariant.
        channels = sorted(self.on[i])
        resume = {ch: seen.get(ch, 0) for ch in channels}
        self.hub.drop(old)
        assert self.hub.subscriptions_of(old) == ()
        self.conns[i] = FakeConn(old.sub)
        self.on[i] = set()
        self.expected[i] = []
        for ch in channels:
            self._subscribe(i, ch, resume[ch])

    @invariant()
    def everyone_got_exactly_what_the_model_says(self) -> None:
        for i, conn in enumerate(self.conns):
            got = conn.received()
            assert got == self.expected[i]


TestHubMachine = HubMachine.TestCase
TestHubMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
