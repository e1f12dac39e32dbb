"""The ``o1`` fixture: a real server with OAuth 1.0a consumers registered
(tests.helpers.oauth1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import attrs
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers.oauth import CHEAP, PASSWORDS
from tests.helpers.oauth1 import oauth1_apps, oauth1_users
from tests.helpers.server import Running


@pytest.fixture(scope="session")
def rsa_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="session")
def user_hashes() -> dict[str, str]:
    return {name: CHEAP.hash(pw) for name, pw in PASSWORDS.items()}


@pytest.fixture
async def o1(start_server: Callable[..., Any], make_settings: Callable[..., Any], tmp_path: Path,
             rsa_private_pem: str, user_hashes: dict[str, str]) -> Running:
    settings = make_settings()
    apps = oauth1_apps(settings.server.state_dir, rsa_private_pem)
    return await start_server(attrs.evolve(settings, apps=apps, users=oauth1_users(user_hashes)))
