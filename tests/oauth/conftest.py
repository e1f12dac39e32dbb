"""The ``env`` fixture: an App driven through the router without
sockets (tests.helpers.oauth.Env)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from realtime.http.router import Router
from realtime.net.startup import compose_app
from realtime.oauth import routes
from realtime.oauth.services import load_or_create_key
from realtime.oauth1 import crypto as oauth1_crypto
from realtime.store.aio import AsyncStore
from realtime.tokens.keyring import KeyRing, RevokedSet
from tests.helpers.oauth import CHEAP, OLD_WEB_SECRET, PASSWORDS, PW_SECRET, SVC_SECRET, WEB_SECRET, WEIRD_SECRET, Env, build_settings


@pytest.fixture(scope="session")
def hashes() -> dict[str, str]:
    values = {"web": WEB_SECRET, "old": OLD_WEB_SECRET, "svc": SVC_SECRET, "pw": PW_SECRET,
              "weird": WEIRD_SECRET, **PASSWORDS}
    return {k: CHEAP.hash(v) for k, v in values.items()}


@pytest.fixture
async def env(tmp_path: Path, hashes: dict[str, str]) -> Any:
    now = time.time()
    settings = build_settings(tmp_path, hashes, now)
    ring = KeyRing.load_or_create(tmp_path / "keys", settings.oauth.signing_alg)
    store = await AsyncStore.open(settings.server.state_dir / "state.sqlite3")
    state_dir = settings.server.state_dir
    state = compose_app(settings, ring, store, RevokedSet(), oauth_key=load_or_create_key(state_dir),
                        oauth1_key=oauth1_crypto.load_or_create_key(state_dir))
    router = Router()
    routes.register(router)
    e = Env(state=state, router=router, now=now)
    state.oauth.clock = lambda: e.now  # time moves by Env.advance
    await state.oauth.start()
    yield e
    await state.store.close()
