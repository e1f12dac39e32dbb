"""`tools/bench/run.py --smoke` runs end to end: every server starts, every
scenario yields a figure, and the last line has the agreed shape.

No thresholds: the smoke proves the bench works, not that we are fast (that is
`run.py --quick`/`--full` on a quiet machine, docs/performance.md). The smoke
uses the Python generator (tools/bench/loadgen_py.py, `websockets` from the
test extras), so CI needs neither node nor npm.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAST_LINE = re.compile(
    r"^bench: handshake_ratio=(\S+) delivery_ratio=(\S+) p99_ms=(\S+) kb_per_conn=(\S+) tls_ratio=(\S+)$"
)

pytest.importorskip("websockets")


@pytest.mark.timeout(120)
def test_bench_smoke_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench" / "run.py"), "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    match = LAST_LINE.match(lines[-1])
    assert match, lines[-1]
    assert all(value != "nan" for value in match.groups()), lines[-1]
    assert "| handshakes/s" in proc.stdout
    report = json.loads(out.read_text())
    assert report["profile"] == "smoke"
    assert not report["errors"], report["errors"]
    for name in ("realtime", "websockets"):
        result = report["results"][name]
        assert result["handshake"]["ok"] > 0
        assert result["fanout_20"]["sat"]["deliveries"] > 0
        assert result["fanout_20"]["lat"]["p99_ms"] is not None
        assert result["idle"]["100"]["open"] == 100
