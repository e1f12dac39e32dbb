"""The ``env`` fixture: a ServerState driven through the router without
sockets (tests.helpers.oauth.Env)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from realtime.http.router import Router
from realtime.oauth import routes
from realtime.app import ServerState
from realtime.store import AsyncStore
from tests.helpers.oauth import CHEAP, OLD_WEB_SECRET, PASSWORDS, PW_SECRET, SVC_SECRET, WEB_SECRET, WEIRD_SECRET, Env, build_settings, hub_for


@pytest.fixture(scope="session")
def hashes() -> dict[str, str]:
    values = {"web": WEB_SECRET, "old": OLD_WEB_SECRET, "svc": SVC_SECRET, "pw": PW_SECRET,
              "weird": WEIRD_SECRET, **PASSWORDS}
    return {k: CHEAP.hash(v) for k, v in values.items()}


@pytest.fixture
async def env(tmp_path: Path, hashes: dict[str, str]) -> Any:
    from realtime.tokens.keyring import KeyRing, RevokedSet

    now = time.time()
    settings = build_settings(tmp_path, hashes, now)
    ring = KeyRing.load_or_create(tmp_path / "keys", settings.oauth.signing_alg)
    state = ServerState(settings=settings, keyring=ring, revoked=RevokedSet(), hub=hub_for(settings))
    state.store = await AsyncStore.open(settings.server.state_dir / "state.sqlite3")
    router = Router()
    routes.register(router)
    e = Env(state=state, router=router, now=now)
    await routes.setup(state, clock=lambda: e.now)
    yield e
    await state.store.close()
