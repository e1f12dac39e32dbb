"""argon2 runs through the injected offload: in a worker thread, never on
the event loop, at most ``ARGON2_THREADS`` at once (DESIGN.md §6)."""

from __future__ import annotations

import threading
import time

import trio

from realtime.net.workers import ARGON2_THREADS, thread_offload
from realtime.oauth import passwords
from realtime.oauth.passwords import Hasher


async def test_argon2_runs_in_worker_threads_behind_the_limiter(monkeypatch) -> None:
    lock = threading.Lock()
    running = peak = 0
    on_loop: list[bool] = []

    def slow_verify(hashed: str | None, secret: str) -> bool:
        nonlocal running, peak
        on_loop.append(threading.current_thread() is threading.main_thread())
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return secret == "right"

    monkeypatch.setattr(passwords, "verify_secret", slow_verify)
    hasher = Hasher(thread_offload(trio.CapacityLimiter(ARGON2_THREADS)))
    results: list[bool] = []

    async def one(secret: str) -> None:
        results.append(await hasher.verify("$argon2id$...", secret))

    async with trio.open_nursery() as nursery:
        for i in range(6):
            nursery.start_soon(one, "right" if i % 2 else "wrong")
    assert sorted(results) == [False] * 3 + [True] * 3
    assert on_loop == [False] * 6
    assert peak == ARGON2_THREADS


def test_session_mark_and_family_fingerprint_share_one_hmac_under_distinct_labels() -> None:
    import base64

    from realtime.config.settings import User
    from realtime.oauth.families import credential_fingerprint
    from realtime.oauth.passwords import credential_hmac
    from realtime.oauth.services import OAuthServices

    key = bytes(range(32))
    user = User(name="alice", password_hash="$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA")
    services = OAuthServices(store=None, key=key, hasher=None, provider_http=None,  # type: ignore[arg-type]
                             users_offload=None)  # type: ignore[arg-type]
    session = credential_hmac(key, "credential", user.name, user.password_hash or "")
    family = credential_hmac(key, "refresh-family-credential", user.name, user.password_hash or "")
    assert services.credential_mark(user) == base64.urlsafe_b64encode(session).decode()[:22]
    assert credential_fingerprint(key, user) == family.hex()
    assert session != family  # one cannot stand in for the other
    changed = User(name="alice", password_hash=user.password_hash + "x")
    assert services.credential_mark(changed) != services.credential_mark(user)
    assert credential_fingerprint(key, changed) != credential_fingerprint(key, user)
