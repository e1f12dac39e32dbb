"""Provider-created users on a shared store (realtime.oauth.callback.create_user
with ``[store] url``, realtime.oauth.providers.users), against the real
store of the ``env`` fixture (the table functions are the same on both
backends): one stored user per name however many first logins race, the
users file wins, names differing only in case are refused; and the
pending logins' sealing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from realtime.config.login_provider import Provider, ProviderError
from realtime.config.settings import User
from realtime.oauth.callback import create_user
from realtime.oauth.providers.pending import Pending, PendingSeal, digest
from realtime.oauth.providers.users import merged, refresh
from realtime.store.provider_logins import PendingRow
from realtime.store import token_hash
from realtime.store.provider_users import StoredUser
from tests.helpers.oauth import WEB_CB, WEB_SECRET

CORP = Provider(name="corp", display_name="Corp", base_url="https://sso.example.com",
                resource_url="https://api.example.com", authorize_path="/authorize", token_path="/token",
                profile_path="/me", profile_id="sub", client_id="id", client_secret="secret",
                default_scopes=("chat:read",))


def shared(env: Any, tmp_path: Path) -> None:
    """The env's node as one of several on a shared store (its store stays the test's own)."""
    settings = env.state.settings
    users = tmp_path / "users.json"
    users.write_text('{"users": []}')
    env.state.settings = attrs.evolve(settings, store=attrs.evolve(settings.store, url="postgresql://db/realtime"),
                                      oauth=attrs.evolve(settings.oauth, users=users), providers={"corp": CORP})


async def test_racing_first_logins_store_one_user_and_not_the_users_file(env: Any, tmp_path: Path) -> None:
    shared(env, tmp_path)
    got: list[User] = []

    async def login() -> None:
        got.append(await create_user(env.state, CORP, "corp:same", {"sub": "same", "email": "s@corp.test"}))

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(login)
    assert {u.name for u in got} == {"corp:same"} and len(got) == 6
    rows = await env.state.store.provider_user_rows()
    assert [(r.name, r.provider, r.subject, r.email) for r in rows] == [("corp:same", "corp", "same", "s@corp.test")]
    assert env.state.settings.users["corp:same"].scopes == ("chat:read",)
    assert (tmp_path / "users.json").read_text() == '{"users": []}'


async def test_a_name_differing_only_in_case_is_refused(env: Any, tmp_path: Path) -> None:
    shared(env, tmp_path)
    await create_user(env.state, CORP, "corp:Bob", {"sub": "Bob"})
    with pytest.raises(ProviderError, match="differs only in case"):
        await create_user(env.state, CORP, "corp:bob", {"sub": "bob"})  # from the store
    settings = env.state.settings
    env.state.settings = attrs.evolve(settings, users={**settings.users, "corp:Carol": User(name="corp:Carol")})
    with pytest.raises(ProviderError, match="differs only in case"):
        await create_user(env.state, CORP, "corp:carol", {"sub": "carol"})  # from the users file
    assert [r.name for r in await env.state.store.provider_user_rows()] == ["corp:Bob"]


async def test_the_users_file_wins_and_a_reload_keeps_stored_users(env: Any, tmp_path: Path) -> None:
    shared(env, tmp_path)
    stored = await create_user(env.state, CORP, "corp:dan", {"sub": "dan"})
    from_file = attrs.evolve(env.state.settings, users={"corp:dan": User(name="corp:dan", disabled=True),
                                                        "alice": User(name="alice")})
    # A reload: the files' snapshot, then the stored users under it.
    after = merged(from_file, env.state.oauth.provider_users.users)
    assert after.users["corp:dan"].disabled and set(after.users) == {"corp:dan", "alice"}
    # The operator takes the user out of the file: the stored one is back.
    back = merged(attrs.evolve(from_file, users={"alice": User(name="alice")}), env.state.oauth.provider_users.users)
    assert back.users["corp:dan"] == stored
    # A stored user differing only in case from a file user is left out.
    clash = merged(attrs.evolve(from_file, users={"corp:DAN": User(name="corp:DAN")}),
                   env.state.oauth.provider_users.users)
    assert set(clash.users) == {"corp:DAN"}


async def test_refresh_takes_users_another_node_stored(env: Any, tmp_path: Path) -> None:
    shared(env, tmp_path)
    await refresh(env.state)  # what the server does at start
    assert not await refresh(env.state)  # nothing new
    await env.state.store.add_provider_user(StoredUser(name="corp:erin", provider="corp", subject="erin",
                                                       scopes=frozenset({"chat:read"}), display_name=None,
                                                       email=None, created_at=env.now))
    assert "corp:erin" not in env.state.settings.users
    assert await refresh(env.state)
    assert env.state.settings.users["corp:erin"].scopes == ("chat:read",)
    assert "alice" in env.state.settings.users  # the file's users stay
    assert not await refresh(env.state)


async def test_a_stored_user_of_a_provider_not_configured_here_is_left_out_and_logged_once(
        env: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """As a users file naming an unconfigured provider's user does not load, such a
    stored user (its provider removed, or not yet added on this node) is no user here."""
    shared(env, tmp_path)
    await create_user(env.state, CORP, "corp:fay", {"sub": "fay"})
    removed = attrs.evolve(env.state.settings, providers={}, users={"alice": User(name="alice")})
    with caplog.at_level("WARNING", logger="realtime.oauth.providers"):
        first = merged(removed, env.state.oauth.provider_users.users)
        again = merged(removed, env.state.oauth.provider_users.users)
    assert set(first.users) == set(again.users) == {"alice"}
    said = [r.getMessage() for r in caplog.records if "corp:fay" in r.getMessage()]
    assert said == ["provider user corp:fay left out: provider 'corp' is not configured here"]
    # Configured again: the user is back.
    assert "corp:fay" in merged(attrs.evolve(removed, providers={"corp": CORP}), env.state.oauth.provider_users.users).users


async def test_a_code_of_a_user_first_stored_by_another_node_is_exchanged_before_the_poll(
        env: Any, tmp_path: Path) -> None:
    """Node B created the user and issued the code; the exchange reaches this node before
    its poll: it looks the user up in the store once instead of answering invalid_grant."""
    shared(env, tmp_path)
    await refresh(env.state)
    await env.state.store.add_provider_user(StoredUser(name="corp:gus", provider="corp", subject="gus",
                                                       scopes=frozenset({"chat:read"}), display_name=None,
                                                       email=None, created_at=env.now))
    await env.state.store.save_code(token_hash("code-from-b"), client_id="web", redirect_uri=WEB_CB,
                                    code_challenge=None, sub="corp:gus", scope=["chat:read"],
                                    expires_at=env.now + 60)
    assert "corp:gus" not in env.state.settings.users
    answer = await env.token({"grant_type": "authorization_code", "code": "code-from-b", "redirect_uri": WEB_CB},
                             auth=("web", WEB_SECRET))
    assert answer.status == 200, answer.body
    assert "corp:gus" in env.state.settings.users
    # A name no store knows is still refused, after one look.
    await env.state.store.save_code(token_hash("code-ghost"), client_id="web", redirect_uri=WEB_CB,
                                    code_challenge=None, sub="corp:ghost", scope=["chat:read"],
                                    expires_at=env.now + 60)
    refused = await env.token({"grant_type": "authorization_code", "code": "code-ghost", "redirect_uri": WEB_CB},
                              auth=("web", WEB_SECRET))
    assert refused.status == 400 and b"invalid_grant" in refused.body


def test_a_sealed_login_keeps_the_verifier_secret_and_opens_only_where_it_belongs() -> None:
    key = b"k" * 32
    login = Pending(provider="corp", params={"client_id": "web", "state": "s"}, binding=digest("cookie"),
                    verifier="the-pkce-verifier-" + "v" * 40, redirect_uri="https://localhost/oauth2/callback/corp",
                    expires_at=1000.0)
    sealed = PendingSeal(key).seal(digest("state-1"), login)
    assert "the-pkce-verifier" not in sealed and "client_id" not in sealed

    def row(state_hash: str, value: str) -> PendingRow:
        return PendingRow(state_hash=state_hash, provider="corp", binding=login.binding, address="-",
                          sealed=value, created_at=0.0, expires_at=1000.0)

    assert PendingSeal(key).open(row(digest("state-1"), sealed)) == login
    assert PendingSeal(b"x" * 32).open(row(digest("state-1"), sealed)) is None  # another node's key
    assert PendingSeal(key).open(row(digest("state-2"), sealed)) is None  # moved to another login
