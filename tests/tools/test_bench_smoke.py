"""`tools/bench/run.py --smoke` runs end to end: every server starts, every
scenario yields a figure, and the last line has the agreed shape.

No thresholds: the smoke proves the bench works, not that we are fast (that is
`run.py --quick`/`--full` on a quiet machine, docs/performance.md). The smoke
uses the C generator (tools/bench/cgen.c, built here with the system `cc`,
which these machines have) as the real runs do, with the Python generator
(tools/bench/loadgen_py.py) for the never-reading-subscriber scenario; a
second, shorter run checks that the Python generator still drives the
multi-publisher scenario alone, so the fallback keeps working. Neither needs
node or npm.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("handshake_ratio", "delivery_ratio", "p99_ms", "kb_per_conn", "tls_ratio", "multipub_ratio_node",
        "multipub_ratio_websockets", "broker_ratio")
LAST_LINE = re.compile("^bench: " + " ".join(rf"{key}=(?P<{key}>\S+)" for key in KEYS) + "$")


def run_bench(tmp_path: Path, *args: str, timeout: float) -> tuple[str, dict[str, Any], dict[str, str]]:
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench" / "run.py"), "--smoke", "--out", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    match = LAST_LINE.match(lines[-1])
    assert match, lines[-1]
    report = json.loads(out.read_text())
    assert report["profile"] == "smoke"
    assert not report["errors"], report["errors"]
    return proc.stdout, report, match.groupdict()


@pytest.mark.timeout(150)
def test_bench_smoke_runs_and_reports(tmp_path: Path) -> None:
    stdout, report, figures = run_bench(tmp_path, timeout=140)
    # node-ws is not in the smoke (no node needed), so its ratio is nan
    assert figures["multipub_ratio_node"] == "nan"
    assert all(value != "nan" for key, value in figures.items() if key != "multipub_ratio_node"), figures
    assert "| handshakes/s" in stdout
    assert "| multipub deliveries/s" in stdout
    assert "| two nodes via Redis" in stdout
    assert report["generator"] == "c", (
        "run.py fell back from the C generator: it needs `cc` (Debian package gcc) and, for wss://, "
        "libssl-dev; tools/test.sh installs both")
    for name in ("realtime", "websockets"):
        result = report["results"][name]
        assert result["handshake"]["ok"] > 0
        assert result["handshake"]["generator"] == "c"
        assert result["fanout_20"]["sat"]["deliveries"] > 0
        assert result["fanout_20"]["lat"]["p99_ms"] is not None
        multipub = result["multipub"]
        assert multipub["generator"] == "c"
        assert multipub["pubs"] == 10
        assert multipub["sat"]["deliveries"] > 0
        assert multipub["sat"]["undelivered_after_drain"] == 0
        assert multipub["sat"]["stuck_messages"] == 0
        assert multipub["lat"]["samples"] == multipub["lat"]["messages"] * 20
        assert result["fanout_tls"]["generator"] == "c"
        assert result["fanout_tls"]["sat"]["deliveries"] > 0
        assert result["fanout_slow"]["generator"] == "py"
        assert result["fanout_slow"]["lat"]["p99_ms"] is not None
        assert result["idle"]["100"]["open"] == 100
    broker = report["broker"]
    for key in ("one_node", "two_nodes"):
        assert broker[key]["sat"]["deliveries"] > 0
        assert broker[key]["subscriber_closes"] == 0
    # the two-node window samples node A and Redis too
    assert "node_a_cpu_pct" in broker["two_nodes"]["sat_cpu"]


@pytest.mark.timeout(90)
def test_bench_smoke_python_generator_drives_multipub(tmp_path: Path) -> None:
    _, report, figures = run_bench(tmp_path, "--gen", "py", "--servers", "realtime", "--only", "multipub",
                                   timeout=80)
    assert figures["multipub_ratio_websockets"] == "nan"  # websockets was not run
    multipub = report["results"]["realtime"]["multipub"]
    assert multipub["generator"] == "py"
    assert multipub["pubs"] == 10
    assert multipub["sat"]["deliveries"] > 0
    assert multipub["lat"]["samples"] > 0
