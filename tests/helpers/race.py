"""Run one call from many threads at once, across two stores (two nodes),
to test single-winner guarantees with real concurrency."""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")
S = TypeVar("S")


def race(nodes: tuple[S, S], call: Callable[[S, int], T], racers: int) -> list[T]:
    """``call(node, n)`` in ``racers`` threads per node, all released at once
    by one barrier; the results (any exception fails the caller's test)."""
    barrier = threading.Barrier(2 * racers)
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(node: S, n: int) -> None:
        barrier.wait()
        try:
            got = call(node, n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(got)

    threads = [threading.Thread(target=run, args=(nodes[n % 2], n)) for n in range(2 * racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results
