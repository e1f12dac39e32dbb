"""A provider's first logins (realtime.oauth.callback.create_user) against a
real users file, with the server's own wiring of the users-file writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import trio

from realtime.config.login_provider import Provider
from realtime.oauth.callback import create_user

CORP = Provider(name="corp", display_name="Corp", base_url="https://sso.example.com",
                resource_url="https://api.example.com", authorize_path="/authorize", token_path="/token",
                profile_path="/me", profile_id="sub", client_id="id", client_secret="secret")


def use_users_file(env: Any, path: Path) -> None:
    settings = env.state.settings
    env.state.settings = attrs.evolve(settings, oauth=attrs.evolve(settings.oauth, users=path))


def names_in(path: Path) -> list[str]:
    return [u["name"] for u in json.loads(path.read_text())["users"]]


async def test_concurrent_first_logins_of_different_users_all_land(env: Any, tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text('{"users": []}')
    use_users_file(env, users)
    subs = [f"corp:u{i}" for i in range(12)]
    async with trio.open_nursery() as nursery:
        for sub in subs:
            nursery.start_soon(create_user, env.state, CORP, sub, {"sub": sub.split(":")[1]})
    assert sorted(names_in(users)) == sorted(subs)  # no read-modify-write lost one
    assert all(sub in env.state.settings.users for sub in subs)


async def test_concurrent_first_logins_of_one_user_write_it_once(env: Any, tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text('{"users": []}')
    use_users_file(env, users)
    got: list[Any] = []

    async def login() -> None:
        got.append(await create_user(env.state, CORP, "corp:same", {"sub": "same"}))

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(login)
    assert names_in(users) == ["corp:same"]
    assert len(got) == 6 and {u.name for u in got} == {"corp:same"}
