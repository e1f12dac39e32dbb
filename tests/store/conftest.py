"""Store fixtures: one store per backend, real files or a real database.

DESIGN.md §8: the store tests run on every backend.  ``open_store`` is
parametrised by backend (SQLite in ``tmp_path``, PostgreSQL in a database
of the test's own on the session's throwaway cluster); a test that needs
a restart calls it again and gets the same store reopened.  Tests of one
backend's own machinery (SQLite's WAL, its file) take ``tmp_path`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from realtime.store import Store
from realtime.store.postgres import PgStore
from tests.helpers.store import OpenStore


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    return lambda: Store.open(tmp_path / "state.sqlite3")


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    url = request.getfixturevalue("pg_url")
    return lambda: PgStore.open(url, pool_size=2)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], OpenStore]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Open (or reopen) this test's store; every store opened is closed after the test."""
    opener = BACKENDS[request.param](request, tmp_path)
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
