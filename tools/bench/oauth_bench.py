"""Token endpoint requests/s through real HTTP (loopback, bounded).

    python tools/bench/oauth_bench.py [--seconds 5] [--loops 8] [--alg RS256]
                                      [--store sqlite|postgres] [--nodes 1|2]

Starts ``python -m realtime serve`` on a temporary config (``--nodes 2``:
two servers with separate state dirs on one PostgreSQL database, the
loops alternating between them), registers a confidential app and a user
with the real CLI, then runs ``--loops`` concurrent keep-alive clients
(httpx) for ``--seconds`` each of:

- ``client_credentials`` (client_secret_basic; argon2 verified once, then
  the keyed-hash cache answers);
- ``refresh_token``: each loop holds its own refresh token and rotates it
  on every request (one store transaction per rotation);
- ``authorization_code``: each request redeems a fresh code (single use,
  one transaction) from a pool written straight into the store beforehand
  (the sign-in pages are not what is measured).

``--store postgres`` starts a throwaway cluster (tests/helpers/postgres.py:
``initdb``/``pg_ctl`` on a loopback port, fsync off) and runs
``realtime store migrate`` against it.  Prints requests/s and failures per grant.
"""

from __future__ import annotations

import argparse
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[server]
http = "127.0.0.1:0"
https = ""
state_dir = "var"
public_url = "https://localhost"

[oauth]
apps = "apps.toml"
users = "users.json"
signing_alg = "{alg}"

[[channel]]
pattern = "chat:*"
subscribe_scope = "chat:read"
publish_scope = "chat:write"
"""


PG_CONFIG = """
[store]
url = "{url}"
key_file = "store.key"
"""
PASSWORD = "bench-password-123"
REDIRECT = "https://bench.example/cb"


def cli(conf: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "realtime", *args, "-c", str(conf)], capture_output=True,
                          text=True, input=stdin, timeout=60, cwd=ROOT)
    if done.returncode:
        raise SystemExit(done.stderr)
    return done.stdout


def serve(conf: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "realtime", "serve", "-c", str(conf)], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"listening http=(\S+)", line)
        if match:
            return proc, f"http://{match.group(1)}"
        if not line and proc.poll() is not None:
            break
    proc.terminate()
    raise SystemExit("server did not start")


def seed_codes(store_at: str | Path, client_id: str, count: int) -> list[str]:
    """``count`` unused codes for alice, written in one transaction."""
    from realtime.store import Store, token_hash

    if isinstance(store_at, Path):
        store = Store.open(store_at)
    else:
        from realtime.store.postgres import PgStore

        store = PgStore.open(store_at, pool_size=1)
    codes = [secrets.token_urlsafe(32) for _ in range(count)]
    rows = [(token_hash(code), client_id, REDIRECT, None, "alice", "chat:read", time.time() + 3600) for code in codes]
    try:
        store.db.write(lambda c: c.executemany(
            "INSERT INTO codes(code_hash, client_id, redirect_uri, code_challenge, sub, scope, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", rows))
    finally:
        store.close()
    return codes


async def run(args: argparse.Namespace) -> None:
    cluster = None
    if args.store == "postgres":
        sys.path.insert(0, str(ROOT))
        from tests.helpers.postgres import PostgresCluster

        cluster = PostgresCluster()
        cluster.start()
    elif args.nodes != 1:
        raise SystemExit("--nodes 2 needs --store postgres (a SQLite store is one node's)")
    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory(prefix="realtime-oauth-bench-") as tmp:
            root = Path(tmp)
            url = cluster.fresh_database(migrated=False) if cluster is not None else None
            confs = []
            for n in range(args.nodes):
                conf = root / f"realtime{n}.toml"
                text = CONFIG.format(alg=args.alg).replace('state_dir = "var"', f'state_dir = "var{n}"')
                if url is not None:
                    text += PG_CONFIG.format(url=url)
                conf.write_text(text)
                confs.append(conf)
            (root / "users.json").write_text('{"users": []}')
            out = cli(confs[0], "app", "add", "bench", "--redirect-uri", REDIRECT, "--grant", "client_credentials",
                      "password", "refresh_token", "authorization_code", "--scope", "chat:read", "chat:write")
            client_id = re.search(r"^client_id: (\S+)", out, re.M).group(1)  # type: ignore[union-attr]
            secret = re.search(r"^client_secret: (\S+)", out, re.M).group(1)  # type: ignore[union-attr]
            cli(confs[0], "user", "add", "alice", "--password-stdin", "--scope", "chat:read", "chat:write",
                stdin=PASSWORD + "\n")
            if url is not None:  # after the app and user files exist: migrate reads the whole config
                cli(confs[0], "store", "migrate")
            bases = []
            for conf in confs:
                proc, base = serve(conf)
                procs.append(proc)
                bases.append(base)
            auth = (client_id, secret)
            clients = [httpx.AsyncClient(base_url=base, auth=auth) for base in bases]
            try:
                await measure(args, clients, url or root / "var0" / "state.sqlite3", client_id)
            finally:
                for http in clients:
                    await http.aclose()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        if cluster is not None:
            cluster.stop()


async def measure(args: argparse.Namespace, clients: list[httpx.AsyncClient], store_at: str | Path,
                  client_id: str) -> None:
    async def refresh_token(http: httpx.AsyncClient) -> str:
        r = await http.post("/oauth2/token", data={"grant_type": "password", "username": "alice",
                                                   "password": PASSWORD})
        r.raise_for_status()
        return r.json()["refresh_token"]

    where = f"{args.store}, {args.nodes} node{'s' if args.nodes > 1 else ''}"
    for grant in ("client_credentials", "refresh_token", "authorization_code"):
        tokens = ([await refresh_token(clients[i % len(clients)]) for i in range(args.loops)]
                  if grant == "refresh_token" else [])
        codes = (await trio.to_thread.run_sync(seed_codes, store_at, client_id, args.codes)
                 if grant == "authorization_code" else [])
        counts = {"ok": 0, "failed": 0}

        async def loop(i: int) -> None:
            http = clients[i % len(clients)]
            with trio.move_on_after(args.seconds):
                while True:
                    data = {"grant_type": grant}
                    if grant == "refresh_token":
                        data["refresh_token"] = tokens[i]
                    elif grant == "authorization_code":
                        if not codes:
                            raise SystemExit("code pool exhausted: raise --codes")
                        data.update(code=codes.pop(), redirect_uri=REDIRECT)
                    r = await http.post("/oauth2/token", data=data)
                    if r.status_code == 200:
                        counts["ok"] += 1
                        if grant == "refresh_token":
                            tokens[i] = r.json()["refresh_token"]
                    else:
                        counts["failed"] += 1

        start = time.monotonic()
        async with trio.open_nursery() as nursery:
            for i in range(args.loops):
                nursery.start_soon(loop, i)
        elapsed = time.monotonic() - start
        print(f"{grant:20s} {counts['ok'] / elapsed:8.0f} req/s  failed={counts['failed']}  "
              f"({args.loops} loops, {elapsed:.1f} s, {args.alg}, {where})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--loops", type=int, default=8)
    parser.add_argument("--alg", default="RS256", choices=["RS256", "ES256", "EdDSA"])
    parser.add_argument("--store", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--nodes", type=int, default=1, choices=[1, 2])
    parser.add_argument("--codes", type=int, default=20000, help="codes written beforehand for the code grant")
    trio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
