"""The live server the hypothesis tests run against (tests.helpers.fuzz)."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.helpers.fuzz import LiveServer, fuzz_settings


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(fuzz_settings(tmp_path_factory.mktemp("fuzz")))
    server.start()
    try:
        yield server
        server.check()
    finally:
        server.stop()
    assert server.crash is None, server.crash
