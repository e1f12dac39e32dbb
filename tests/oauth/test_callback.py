"""A provider's first logins (realtime.oauth.callback.create_user) against a
real users file, with the server's own wiring of the users-file writer."""

from __future__ import annotations

import json
import subprocess
import sys
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


# An operator command (`realtime user ...`) in the middle of its
# read-modify-write: it holds the users file's lock and has read the file.
OPERATOR = """
import sys
from pathlib import Path
from realtime.config.edit import UserFile, locked
path = Path(sys.argv[1])
with locked(path):
    users = UserFile(path)
    print("read", flush=True)
    sys.stdin.readline()
    users.add_user("ops", [])
    users.save()
"""


async def test_first_login_waits_for_an_operator_edit_and_neither_is_lost(env: Any, tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text('{"users": []}')
    use_users_file(env, users)
    operator = await trio.lowlevel.open_process([sys.executable, "-c", OPERATOR, str(users)],
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert operator.stdout is not None and operator.stdin is not None
        with trio.fail_after(30):
            out = b""
            while not out.endswith(b"\n"):
                out += await operator.stdout.receive_some()
        assert out == b"read\n"
        done = trio.Event()

        async def login() -> None:
            await create_user(env.state, CORP, "corp:new", {"sub": "new"})
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(login)
            # While the operator holds the lock the server's writer waits
            # (in its worker thread: the event loop keeps running).
            with trio.move_on_after(1.0):
                await done.wait()
            assert not done.is_set()
            await operator.stdin.send_all(b"go\n")
            with trio.fail_after(30):
                assert await operator.wait() == 0
                await done.wait()
    finally:
        if operator.returncode is None:
            operator.kill()
            await operator.wait()
    assert sorted(names_in(users)) == ["corp:new", "ops"]
