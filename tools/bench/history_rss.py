"""Server RSS while channels keep large messages nobody subscribes to
(issue 18, M4; the review's reproduction): 100 x 512 KiB published to
chat:big1, then 50 x 512 KiB to chat:big2, through /api/publish.

Runs ``python -m realtime serve`` of whatever tree is first on the path:

    .venv/bin/python tools/bench/history_rss.py                  # this tree
    PYTHONPATH=/work/main .venv/bin/python tools/bench/history_rss.py --old-keys

``--old-keys`` leaves out the keys an older tree does not know
(``[api] publish_rate``).  Both runs raise ``max_message_bytes`` and
``max_body_bytes`` so that 512 KiB messages are accepted at all.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CONFIG = """
[server]
state_dir = "var"
public_url = "http://127.0.0.1"
max_body_bytes = 2097152

[oauth]
users = "users.json"
apps = "apps.toml"

[websocket]
max_message_bytes = 1048576
{extra_ws}
[[channel]]
pattern = "chat:*"
subscribe_scope = "chat:read"
publish_scope = "chat:write"
{extra}
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old-keys", action="store_true", help="the tree has no [api] section")
    args = parser.parse_args()
    extra = "" if args.old_keys else '\n[api]\npublish_rate = "1000/s"\n'
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "realtime.toml").write_text(CONFIG.format(extra=extra, extra_ws=""))
        (root / "apps.toml").write_text(
            '[[app]]\nname = "Bench"\nclient_id = "bench"\npublic = true\n'
            'redirect_uris = ["http://127.0.0.1/cb"]\nscopes = ["chat:read", "chat:write"]\n')
        (root / "users.json").write_text(json.dumps({"users": [{"name": "alice", "scopes": ["chat:read", "chat:write"]}]}))
        proc = subprocess.Popen(
            [sys.executable, "-m", "realtime", "serve", "-c", str(root / "realtime.toml"),
             "--http", "127.0.0.1:0", "--https", ""],
            cwd=root, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert proc.stderr is not None
            deadline = time.monotonic() + 30
            addr = None
            while addr is None and time.monotonic() < deadline:
                line = proc.stderr.readline()
                match = re.search(r"http=(\S+)", line)
                if "listening" in line and match:
                    addr = match.group(1)
            assert addr, "the server did not start"
            from realtime.tokens.keyring import KeyRing, issue_access_token

            ring = KeyRing.load_or_create(root / "var" / "keys", "RS256")
            token, _ = issue_access_token(ring, issuer="http://127.0.0.1", audience="http://127.0.0.1",
                                          sub="alice", client_id="bench", scope=["chat:read", "chat:write"], ttl=600)
            blob = "x" * (512 * 1024 - 64)
            with httpx.Client(base_url=f"http://{addr}", headers={"authorization": f"Bearer {token}"}) as client:
                print(f"RSS at start: {rss_mib(proc.pid):.0f} MiB")
                for channel, n in (("chat:big1", 100), ("chat:big2", 50)):
                    codes: dict[int, int] = {}
                    for _ in range(n):
                        response = client.post("/api/publish", json={"channel": channel, "data": blob})
                        code = response.status_code
                        if code != 200 and not codes:
                            print("  first refusal:", response.text[:200])
                        codes[code] = codes.get(code, 0) + 1
                    print(f"after {n} x 512 KiB to {channel}: RSS {rss_mib(proc.pid):.0f} MiB, answers {codes}")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
