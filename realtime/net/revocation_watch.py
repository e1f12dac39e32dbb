"""Revocations made on other nodes, read from the shared store.

With ``[store] url`` every node writes its revocations (revoked access
tokens by ``jti``, including those of a revoked refresh family, and the
``POST /api/revoke`` cut-offs) to PostgreSQL before it answers.  The
broker pushes them to the other nodes at once; this poll is how a node
learns of them without a broker, and the safety net with one (a node
whose pub/sub link dropped a message).  Every ``[store] revocation_poll``
it reads the unexpired revocations and applies the ones it does not
hold yet as a broker message would: the verifier's set refuses the
token from then on, and its live sockets close with 4003.

Revoked jtis are read by a cursor (``revoked_at``, the database's
clock, :mod:`realtime.store.postgres.revocations`): the first poll reads
the revocations of every unexpired token, later ones only those written
since the previous read (with an overlap).  The ``cutoffs`` table is
small (one row per revoked sub and client) and read whole.  What is new
is decided here, against the verifier's set and the cut-offs already
applied.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime
from typing import Iterable

import attrs
import trio

from realtime.api.app import App
from realtime.net.store_poll import poll_store
from realtime.store import cutoffs as cutoffs_table
from realtime.store.postgres.revocations import revocations_since
from realtime.tokens.keyring import RevokedSet

__all__ = ["Applied", "CutoffMemory", "apply_revocations", "new_jtis", "read_revocations", "watch_revocations"]

log = logging.getLogger("realtime.revocations")

Cutoff = tuple[str, str, float]  # (sub, client_id or "", issued_before)


@attrs.define
class CutoffMemory:
    """The newest ``issued_before`` applied per ``(sub, client_id)``, so a
    cut-off already acted on does not walk the hub again at every poll."""

    seen: dict[tuple[str, str], float] = attrs.field(factory=dict)

    def news(self, rows: Iterable[Cutoff]) -> list[Cutoff]:
        """The rows later than what was applied for their key.  ``rows`` is
        every cut-off the store keeps, so a key missing from it is forgotten
        (the memory stays as small as the table)."""
        fresh, kept = [], {}
        for sub, client_id, issued_before in rows:
            key = (sub, client_id)
            if self.seen.get(key, -math.inf) < issued_before:
                fresh.append((sub, client_id, issued_before))
            kept[key] = max(issued_before, self.seen.get(key, -math.inf))
        self.seen = kept
        return fresh


def new_jtis(revoked: RevokedSet, rows: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """The revocations the verifier does not hold yet."""
    return [(jti, exp) for jti, exp in rows if jti not in revoked]


@attrs.frozen
class Applied:
    tokens: int = 0
    cutoffs: int = 0
    closed: int = 0


def apply_revocations(state: App, memory: CutoffMemory, jtis: Iterable[tuple[str, float]],
                      cutoffs: Iterable[Cutoff]) -> Applied:
    """Apply what another node revoked: the verifier's set and the live
    sockets, never the broker (the revoking node pushed it already)."""
    tokens = new_jtis(state.revoked, jtis)
    closed = 0
    for jti, exp in tokens:
        closed += state.revoke_access(jti, exp, share=False)
    cuts = memory.news(cutoffs)
    for sub, client_id, issued_before in cuts:
        closed += state.apply_cutoff(sub, client_id, issued_before)
    return Applied(len(tokens), len(cuts), closed)


async def read_revocations(state: App, now: float, since: datetime | None = None
                           ) -> tuple[list[tuple[str, float]], list[Cutoff], datetime]:
    """The unexpired revoked jtis written since ``since`` (None: all), the
    kept cut-offs, and the cursor for the next read."""
    db = state.store.sync.db
    jtis, cursor = await state.store.call(revocations_since, db, since, now)
    rows = await state.store.call(cutoffs_table.live_cutoffs, db, now)
    return jtis, [(sub, client_id, issued_before) for sub, client_id, issued_before, _ in rows], cursor


async def watch_revocations(state: App, interval: float,
                            task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Poll the store every ``interval`` seconds for ever; a failed read
    (database down) is logged once and retried at the next tick."""
    memory = CutoffMemory()  # the first poll applies the kept cut-offs again: harmless, once
    since: datetime | None = None  # the first poll reads every unexpired revocation

    async def step() -> None:
        nonlocal since
        jtis, cutoffs, since = await read_revocations(state, time.time(), since)
        applied = apply_revocations(state, memory, jtis, cutoffs)
        if applied.tokens or applied.cutoffs:
            log.info("revocations from the store: %d token(s), %d cut-off(s); %d connection(s) closed",
                     applied.tokens, applied.cutoffs, applied.closed)

    task_status.started()
    await poll_store(log, "the revocations", interval, step, say_recovered=True)
