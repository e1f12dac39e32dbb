"""A small Python load generator with loadgen.js's scenarios and line protocol.

    python tools/bench/loadgen_py.py '<json config>'

For ``run.py --smoke`` (CI): it needs only ``websockets`` from the test
install, no Node and no npm. It is far slower than loadgen.js (one asyncio
loop parsing every frame), so its figures are generator-bound: use it to check
that the bench works, not to compare servers.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

CFG: dict[str, Any] = json.loads(sys.argv[1])
SSL = ssl.create_default_context()
SSL.check_hostname = False
SSL.verify_mode = ssl.CERT_NONE


def now_ms() -> float:
    return time.perf_counter() * 1000


async def mark(name: str, wait: bool = False) -> None:
    print(f"{'MARKWAIT' if wait else 'MARK'} {name}", flush=True)
    if wait:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


def result(obj: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(obj), flush=True)


async def open_authed(token: str, url: str | None = None):  # noqa: ANN201
    url = url or CFG["url"]
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"}, compression=None,
                       ping_interval=None, ssl=SSL if url.startswith("wss:") else None,
                       max_size=4 << 20, open_timeout=20)
    welcome = json.loads(await ws.recv())
    if welcome.get("type") != "welcome":
        raise RuntimeError(f"expected welcome, got {welcome}")
    return ws


async def pool(count: int, concurrency: int, fn):  # noqa: ANN001, ANN201
    out: list[Any] = [None] * count
    it = iter(range(count))

    async def worker() -> None:
        for i in it:
            out[i] = await fn(i)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return out


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    idx = min(len(sorted_values) - 1, max(0, -(-int(p * len(sorted_values)) // 100) - 1))
    return sorted_values[idx]


async def handshake() -> None:
    tokens = CFG["tokens"]
    ok = errors = 0
    first_error = None
    stop = False

    async def loop(i: int) -> None:
        nonlocal ok, errors, first_error
        while not stop:
            try:
                ws = await open_authed(tokens[i % len(tokens)])
                await ws.close()
                ok += 1
            except Exception as exc:  # noqa: BLE001 - counted
                errors += 1
                first_error = first_error or repr(exc)
                await asyncio.sleep(0.005)

    await mark("hs_start")
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(loop(i)) for i in range(CFG["concurrency"])]
    await asyncio.sleep(CFG["duration"])
    elapsed = time.perf_counter() - t0
    in_window = ok
    stop = True
    await mark("hs_end")
    await asyncio.gather(*tasks)
    result({"mode": "handshake", "ok": in_window, "errors": errors, "first_error": first_error,
            "seconds": elapsed, "per_s": in_window / elapsed})


async def fanout() -> None:
    n = CFG["n"]
    channel = CFG.get("channel", "chat:bench")
    token = CFG["token"]
    pad = "x" * CFG.get("pad", 4)
    t_setup = time.perf_counter()
    sub_urls = CFG.get("sub_urls") or [CFG["url"]]
    pub_urls = CFG.get("pub_urls") or [CFG["url"]]

    async def sub(i: int):  # noqa: ANN202
        ws = await open_authed(token, sub_urls[i % len(sub_urls)])
        await ws.send(json.dumps({"type": "subscribe", "channel": channel, "id": i + 1}))
        ack = json.loads(await ws.recv())
        assert ack.get("type") == "ack", ack
        return ws

    subs = await pool(n, 50, sub)
    stall_channel = CFG.get("stall_channel", "chat:stall")
    stalled = None
    if CFG.get("stalled"):
        # never read: after max_queue frames, websockets stops reading the socket
        stalled = await sub(-1)
        await stalled.send(json.dumps({"type": "subscribe", "channel": stall_channel}))
    # CFG["pubs"] publishers on their own sockets (multipub)
    pubs = [await open_authed(token, pub_urls[i % len(pub_urls)]) for i in range(CFG.get("pubs", 1))]
    if CFG.get("settle_ms"):
        await asyncio.sleep(CFG["settle_ms"] / 1000)
    out: dict[str, Any] = {"mode": "fanout", "n": n, "stalled": bool(stalled), "pubs": len(pubs),
                           "setup_seconds": time.perf_counter() - t_setup}
    state = {"phase": "idle", "delivered": 0, "published": 0, "bytes": 0}
    latencies: list[float] = []
    changed = asyncio.Event()
    close_codes: dict[str, int] = {}
    # multipub: publisher i keeps `inflight` messages in flight, each until every
    # subscriber has it, counted from its own deliveries ("i" and "s" in the data)
    multi = "pubs" in CFG
    inflight = CFG.get("inflight", 4)
    sent = [0] * len(pubs)
    done = [0] * len(pubs)
    slots = [0] * (len(pubs) * inflight)

    async def reader(ws) -> None:  # noqa: ANN001
        try:
            async for raw in ws:
                state["delivered"] += 1
                state["bytes"] += len(raw)
                if state["phase"] == "lat":
                    latencies.append(now_ms() - json.loads(raw)["data"]["t"])
                elif multi and state["phase"] == "sat":
                    data = json.loads(raw)["data"]
                    i, s = data["i"], data["s"]
                    if sent[i] - inflight <= s < sent[i]:
                        slots[i * inflight + s % inflight] += 1
                        if slots[i * inflight + s % inflight] == n:
                            done[i] += 1
                changed.set()
        except ConnectionClosed as exc:
            code = str(exc.rcvd.code if exc.rcvd else None)
            close_codes[code] = close_codes.get(code, 0) + 1

    pub_errors = []

    async def pub_reader(ws) -> None:  # noqa: ANN001
        async for raw in ws:
            if not str(raw).startswith('{"type":"ack"'):
                pub_errors.append(str(raw)[:200])

    readers = [asyncio.create_task(reader(ws)) for ws in subs]
    pub_tasks = [asyncio.create_task(pub_reader(ws)) for ws in pubs]

    async def publish(body: str | None = None, to: str = channel, i: int | None = None) -> None:
        i = state["published"] % len(pubs) if i is None else i
        if to == channel:
            state["published"] += 1
        s = sent[i]
        sent[i] += 1
        if multi and state["phase"] == "sat":
            slots[i * inflight + s % inflight] = 0
        await pubs[i].send(f'{{"type":"publish","channel":"{to}","data":{{"t":{now_ms():.3f},"i":{i},"s":{s},'
                           f'"p":"{body or pad}"}}}}')

    async def wait_for(target: int, timeout: float) -> bool:
        end = time.perf_counter() + timeout
        while state["delivered"] < target:
            changed.clear()
            left = end - time.perf_counter()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(changed.wait(), left)
            except asyncio.TimeoutError:
                return False
        return True

    async def lat_phase(name: str) -> dict[str, Any]:
        state.update(phase="lat", delivered=0, published=0)
        latencies.clear()
        timeouts = 0
        await mark(f"{name}_start")
        t0 = time.perf_counter()
        end = t0 + CFG["lat_duration"]
        while time.perf_counter() < end:
            await publish()
            if not await wait_for(state["published"] * n, 5):
                timeouts += 1
                state["delivered"] = state["published"] * n
        elapsed = time.perf_counter() - t0
        state["phase"] = "idle"
        await mark(f"{name}_end")
        lat = sorted(latencies)
        return {"messages": state["published"], "samples": len(lat), "seconds": elapsed, "timeouts": timeouts,
                "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
                "max_ms": lat[-1] if lat else None, "messages_per_s": state["published"] / elapsed}

    if stalled is not None and CFG.get("lat_duration", 0) > 0:
        out["lat_base"] = await lat_phase("lat_base")
    if stalled is not None and CFG.get("prefill_bytes", 0) > 0:
        big = "y" * CFG.get("prefill_message_bytes", 32768)
        count = -(-CFG["prefill_bytes"] // len(big))
        for _ in range(count):
            await publish(big, to=stall_channel)
        await asyncio.sleep(CFG.get("prefill_settle_ms", 1000) / 1000)
        out["prefill"] = {"messages": count, "bytes": count * len(big)}

    if CFG.get("sat_duration", 0) > 0:
        state.update(phase="sat", delivered=0, published=0, bytes=0)
        await mark("sat_start")
        t0 = time.perf_counter()
        end = t0 + CFG["sat_duration"]
        while time.perf_counter() < end:
            if multi:
                for i in range(len(pubs)):
                    while sent[i] - done[i] < inflight:
                        await publish(i=i)
            while not multi and state["published"] - state["delivered"] / n < inflight:
                await publish()
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), max(0.001, end - time.perf_counter()))
            except asyncio.TimeoutError:
                pass
        elapsed = time.perf_counter() - t0
        got, nbytes = state["delivered"], state["bytes"]
        await mark("sat_end")
        await wait_for(state["published"] * n, 10)
        out["sat"] = {"deliveries": got, "seconds": elapsed, "per_s": got / elapsed,
                      "messages_per_s": got / n / elapsed, "frame_bytes": nbytes / got if got else None,
                      "inflight": inflight}

    if CFG.get("lat_duration", 0) > 0:
        out["lat"] = await lat_phase("lat")

    out["publisher_errors"] = len(pub_errors)
    out["publisher_last_error"] = pub_errors[-1] if pub_errors else None
    out["subscriber_close_codes"] = close_codes
    if stalled is not None:
        try:
            while True:  # read what the server still sent, until its close (4009 on realtime)
                await asyncio.wait_for(stalled.recv(), 0.3)
        except ConnectionClosed as exc:
            out["stalled_close_code"] = exc.rcvd.code if exc.rcvd else None
        except asyncio.TimeoutError:
            out["stalled_close_code"] = None
    for task in [*readers, *pub_tasks]:
        task.cancel()
    for ws in [*subs, *pubs] + ([stalled] if stalled is not None else []):
        ws.transport.abort()
    result(out)


async def idle() -> None:
    t0 = time.perf_counter()
    failures = 0
    first_error = None
    tokens = CFG["tokens"]

    async def one(i: int):  # noqa: ANN202
        nonlocal failures, first_error
        try:
            return await open_authed(tokens[i % len(tokens)])
        except Exception as exc:  # noqa: BLE001 - counted
            failures += 1
            first_error = first_error or repr(exc)
            return None

    conns = await pool(CFG["n"], CFG.get("connect_concurrency", 100), one)
    setup = time.perf_counter() - t0
    await asyncio.sleep(CFG.get("settle_ms", 1000) / 1000)
    await mark("idle", wait=True)
    opened = sum(1 for ws in conns if ws is not None and ws.state.name == "OPEN")
    for ws in conns:
        if ws is not None:
            ws.transport.abort()
    result({"mode": "idle", "n": CFG["n"], "open": opened, "failures": failures, "first_error": first_error,
            "setup_seconds": setup})


async def main() -> None:
    try:
        await {"handshake": handshake, "fanout": fanout, "idle": idle}[CFG["mode"]]()
    except Exception as exc:  # noqa: BLE001 - reported to run.py
        print(f"loadgen_py {CFG['mode']} failed: {exc!r}", file=sys.stderr, flush=True)
        result({"mode": CFG["mode"], "error": repr(exc)})


if __name__ == "__main__":
    asyncio.run(main())
