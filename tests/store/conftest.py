"""Store fixtures: real files in ``tmp_path``, one store per backend.

DESIGN.md §8: the store tests run on every backend.  ``open_store`` is
parametrised by backend (SQLite today); a test that needs a restart calls
it again and gets the same store reopened.  Tests of one backend's own
machinery (SQLite's WAL, its file) take ``tmp_path`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from realtime.store import Store
from tests.helpers.store import OpenStore


def _sqlite(tmp_path: Path) -> OpenStore:
    return lambda: Store.open(tmp_path / "state.sqlite3")


BACKENDS: dict[str, Callable[[Path], OpenStore]] = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(BACKENDS))
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Open (or reopen) this test's store; every store opened is closed after the test."""
    opener = BACKENDS[request.param](tmp_path)
    opened: list[Store] = []

    def open_again() -> Store:
        opened.append(opener())
        return opened[-1]

    yield open_again
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store: OpenStore) -> Store:
    return open_store()
