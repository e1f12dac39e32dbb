"""The JavaScript client library (clients/js, issue 23).

Its own tests run under Node's test runner (``npm test``) against a real
``realtime serve`` subprocess and a real redis-server; this module runs
them in CI and fails with their output.  It also checks that the copies
the demo page serves (realtime/api/static/lib/) are the library byte for
byte, and that ``npm pack`` gives a tarball that installs and imports.

Node and npm are Debian's ``nodejs`` and ``npm`` (tools/test.sh installs
them); a missing one fails naming the package, never skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "clients" / "js"
STATIC = ROOT / "realtime" / "api" / "static" / "lib"
SOURCES = ("realtime.js", "pkce.js", "transports.js")


def need(command: str, package: str) -> str:
    path = shutil.which(command)
    if path is None:
        pytest.fail(f"{command} is missing: install Debian's {package} package "
                    f"(`apt-get install {package}`; tools/test.sh does it)", pytrace=False)
    return path


def run(args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(args)}` in {cwd} exited {done.returncode}:\n{output[-12000:]}", pytrace=False)
    return output


def npm_ci() -> None:
    need("node", "nodejs")
    npm = need("npm", "npm")
    run([npm, "ci", "--no-audit", "--no-fund"], LIB, 300)


def test_demo_serves_the_library_byte_for_byte() -> None:
    for name in SOURCES:
        source, copy = (LIB / name).read_bytes(), (STATIC / name).read_bytes()
        assert copy == source, (f"realtime/api/static/lib/{name} differs from clients/js/{name}: "
                                f"cp clients/js/{name} realtime/api/static/lib/{name}")


@pytest.mark.timeout(600)
def test_npm_test_against_a_real_server() -> None:
    npm_ci()
    need("redis-server", "redis-server")
    # The Node tests start `python -m realtime serve` with this interpreter.
    output = run([shutil.which("npm") or "npm", "test", "--", "--test-reporter=spec"], LIB, 540,
                 env={"REALTIME_PYTHON": sys.executable})
    assert "fail 0" in output, output[-4000:]


@pytest.mark.timeout(300)
def test_npm_pack_gives_a_tarball_that_installs_and_imports(tmp_path: Path) -> None:
    npm_ci()
    npm = shutil.which("npm") or "npm"
    packed = json.loads(run([npm, "pack", "--json", "--pack-destination", str(tmp_path)], LIB, 120))
    (info,) = packed
    tarball = tmp_path / info["filename"]
    with tarfile.open(tarball) as tar:
        names = sorted(m.name for m in tar.getmembers())
    assert names == sorted(f"package/{n}" for n in (
        "package.json", "README.md", *SOURCES, *(n.replace(".js", ".d.ts") for n in SOURCES))), names
    # An app installs it (no runtime dependency, so no registry needed) and imports it.
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "app", "version": "1.0.0", "type": "module"}))
    run([npm, "install", "--offline", "--no-audit", "--no-fund", str(tarball)], app, 120)
    out = run(["node", "--input-type=module", "-e",
               "import { Realtime, PkceClient } from '@realtime/client';"
               "import { webSocketTransport } from '@realtime/client/transports';"
               "const rt = new Realtime('https://rt.example', { getToken: () => 't', WebSocket: class {} });"
               "console.log(rt.url, typeof PkceClient, typeof webSocketTransport);"], app, 60)
    assert out.strip() == "wss://rt.example/ws function function", out
