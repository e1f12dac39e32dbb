"""The trio edge: every store call in one worker thread at a time."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio
import trio.testing

from realtime.store import Store, StoreClosed, token_hash
from realtime.store.aio import AsyncStore
from realtime.store.calls import Awaited, StoreCalls
from tests.helpers.store import NOW, issued


async def test_calls_wait_for_the_one_store_thread_and_close_comes_last(store: Store) -> None:
    astore = AsyncStore(store)
    release = threading.Event()
    ran: list[tuple[str, int]] = []

    def first() -> None:
        release.wait()
        ran.append(("first", threading.get_ident()))

    def second() -> None:
        ran.append(("second", threading.get_ident()))

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(astore.call, first)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(astore.call, second)
            nursery.start_soon(astore.close)
            await trio.testing.wait_all_tasks_blocked()
            # ``first`` holds the one token; the others queue for it.
            assert astore.limiter.borrowed_tokens == 1
            assert astore.limiter.statistics().tasks_waiting == 2
            assert ran == [] and not store.closed
            release.set()
    finally:
        release.set()  # never leave the worker blocked if an assertion failed
    assert [name for name, _ in ran] == ["first", "second"]
    assert threading.get_ident() not in {ident for _, ident in ran}  # never on the event loop
    assert store.closed


async def test_call_passes_arguments_and_returns_the_result(store: Store) -> None:
    astore = AsyncStore(store)
    assert await astore.call(lambda a, *, b: (a, b), 1, b=2) == (1, 2)


async def test_exceptions_propagate_and_free_the_thread(store: Store) -> None:
    astore = AsyncStore(store)

    def boom() -> None:
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        await astore.call(boom)
    assert astore.limiter.borrowed_tokens == 0
    await astore.record_issue(NOW, issued("a1", refresh="t1"))
    with pytest.raises(Exception) as caught:  # the backend's integrity error: a duplicate hash
        await astore.record_issue(NOW, issued("a2", refresh="t1"))
    assert not isinstance(caught.value, StoreClosed)
    assert (await astore.counts())["families"] == 1  # rolled back; the store goes on
    await astore.close()
    with pytest.raises(StoreClosed):
        await astore.get_code(token_hash("c"))


async def test_each_async_method_is_the_store_method_of_its_name(store: Store) -> None:
    offloaded = {name for name, attr in vars(StoreCalls).items() if isinstance(attr, Awaited)}
    assert offloaded and all(callable(getattr(Store, name)) for name in offloaded)
    # Looked up by name on the store held, so another backend is served by the same lines.
    astore = AsyncStore(store)
    assert await astore.get_consent("alice", "app") is None
    await astore.save_consent("alice", "app", iter(["a", "b"]), NOW)
    assert store.get_consent("alice", "app") == frozenset({"a", "b"})


def test_a_misnamed_declaration_is_refused() -> None:
    with pytest.raises((TypeError, RuntimeError)) as caught:
        type("Broken", (), {"get_code": Awaited(Store.save_code)})
    assert "Store.save_code" in str(caught.value) + str(caught.value.__cause__)


async def test_async_store_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = await AsyncStore.open(path)
    await store.save_code(token_hash("c"), client_id="app", redirect_uri=None, code_challenge=None,
                          sub="alice", scope={"s"}, expires_at=NOW + 60)
    results = []

    async def redeem(n: int) -> None:
        results.append(await store.redeem_code(token_hash("c"), NOW, issued(f"j{n}", refresh=f"r{n}")))

    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(redeem, n)
    assert sorted(results) == [False, False, False, False, True]
    assert (await store.get_code(token_hash("c"))).used_at == NOW
    await store.revoke_jtis([("x", NOW + 5)])
    assert await store.revoked_jtis(NOW) == [("x", NOW + 5)]
    assert (await store.sweep(NOW))["oauth1_nonces"] == 0  # both sweeps, merged
    await store.close()
    again = await AsyncStore.open(path)
    assert await again.is_revoked("x")
    assert (await again.counts())["refresh_tokens"] == 1
    await again.close()
