"""Token endpoint requests/s through real HTTP (loopback, bounded).

    python tools/bench/oauth_bench.py [--seconds 5] [--loops 8] [--alg RS256]

Starts ``python -m realtime serve`` on a temporary config, registers a
confidential app and a user with the real CLI, then runs ``--loops``
concurrent keep-alive clients (httpx) for ``--seconds`` each of:

- ``client_credentials`` (client_secret_basic; argon2 verified once, then
  the keyed-hash cache answers);
- ``refresh_token``: each loop holds its own refresh token and rotates it
  on every request (one SQLite transaction with fsync per rotation).

Prints requests/s and failures per grant.
"""

from __future__ import annotations

import argparse
import re
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


def cli(conf: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "realtime", *args, "-c", str(conf)], capture_output=True,
                          text=True, input=stdin, timeout=60, cwd=ROOT)
    if done.returncode:
        raise SystemExit(done.stderr)
    return done.stdout


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="realtime-oauth-bench-") as tmp:
        root = Path(tmp)
        conf = root / "realtime.toml"
        conf.write_text(CONFIG.format(alg=args.alg))
        (root / "users.json").write_text('{"users": []}')
        out = cli(conf, "app", "add", "bench", "--redirect-uri", "https://bench.example/cb", "--grant",
                  "client_credentials", "password", "refresh_token", "--scope", "chat:read", "chat:write")
        client_id = re.search(r"^client_id: (\S+)", out, re.M).group(1)  # type: ignore[union-attr]
        secret = re.search(r"^client_secret: (\S+)", out, re.M).group(1)  # type: ignore[union-attr]
        cli(conf, "user", "add", "alice", "--password-stdin", "--scope", "chat:read", "chat:write",
            stdin="bench-password-123\n")
        proc = subprocess.Popen([sys.executable, "-m", "realtime", "serve", "-c", str(conf)], cwd=ROOT,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            base = None
            deadline = time.monotonic() + 30
            while base is None and time.monotonic() < deadline:
                line = proc.stderr.readline()
                match = re.search(r"listening http=(\S+)", line)
                if match:
                    base = f"http://{match.group(1)}"
            if base is None:
                raise SystemExit("server did not start")
            auth = (client_id, secret)
            async with httpx.AsyncClient(base_url=base, auth=auth) as http:
                async def refresh_token() -> str:
                    r = await http.post("/oauth2/token", data={"grant_type": "password", "username": "alice",
                                                               "password": "bench-password-123"})
                    r.raise_for_status()
                    return r.json()["refresh_token"]

                for grant in ("client_credentials", "refresh_token"):
                    tokens = [await refresh_token() for _ in range(args.loops)] if grant == "refresh_token" else []
                    counts = {"ok": 0, "failed": 0}

                    async def loop(i: int) -> None:
                        with trio.move_on_after(args.seconds):
                            while True:
                                data = {"grant_type": grant}
                                if grant == "refresh_token":
                                    data["refresh_token"] = tokens[i]
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
                          f"({args.loops} loops, {elapsed:.1f} s, {args.alg})")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--loops", type=int, default=8)
    parser.add_argument("--alg", default="RS256", choices=["RS256", "ES256", "EdDSA"])
    trio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
