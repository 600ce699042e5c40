"""Peak memory of parsing a ~100 MB SARIF report: stream_report + chunks must stay flat.

A benchmark, not a unit test: it runs only with PEARL_PERF=1 (about a minute). The report is
generated in one subprocess and each parser is measured in a fresh one, reading the kernel's
high-water mark of resident memory (VmHWM) so nothing else of the test process counts.

    PEARL_PERF=1 .venv/bin/python -m pytest tests/perf/test_parse_memory.py -s -p no:cacheprovider
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    not os.environ.get("PEARL_PERF"), reason="benchmark; set PEARL_PERF=1"
)

ROOT = Path(__file__).resolve().parents[2]
RESULTS, FILES = 296_735, 59_347
LIMIT_MB = 200

GENERATE = """
import sys
from services.bench.ingest import sarif_report
with open(sys.argv[1], "wb") as out:
    out.write(sarif_report(int(sys.argv[2]), int(sys.argv[3])))
"""

MEASURE = """
import json, sys

def high_water_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")

from domain.scanners import parse_report, stream_report

path, mode, spill_dir = sys.argv[1:4]
baseline = high_water_kib()
with open(path, "rb") as report:
    if mode == "stream":
        with stream_report(report, spill_dir=spill_dir) as stream:
            count = stream.count
            seen = sum(len(chunk) for chunk in stream.chunks())
            assert seen == count, (seen, count)
    else:
        count = len(parse_report(report).findings)
print(json.dumps({"mode": mode, "findings": count, "baseline_kib": baseline,
                  "peak_kib": high_water_kib()}))
"""


def run(script: str, *args: str) -> str:
    """Run a script in a fresh interpreter of this venv, from the project root."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def measure(report: Path, mode: str, spill_dir: Path) -> dict[str, Any]:
    """Parse the report in a fresh process and return its memory figures."""
    figures: dict[str, Any] = json.loads(run(MEASURE, str(report), mode, str(spill_dir)))
    print(
        f"\n{mode:>6}: {figures['findings']} findings, peak RSS "
        f"{figures['peak_kib'] / 1024:.0f} MB (interpreter + imports "
        f"{figures['baseline_kib'] / 1024:.0f} MB)"
    )
    return figures


def test_peak_rss_stays_under_200_mb_when_streaming_a_100_mb_sarif(tmp_path: Path) -> None:
    report = tmp_path / "big.sarif"
    run(GENERATE, str(report), str(RESULTS), str(FILES))
    print(f"\nreport: {report.stat().st_size / 1e6:.0f} MB, {RESULTS} results")
    streamed = measure(report, "stream", tmp_path)
    if os.environ.get("PEARL_PERF_COMPARE"):
        whole = measure(report, "parse", tmp_path)
        assert whole["findings"] == streamed["findings"]
    assert streamed["peak_kib"] < LIMIT_MB * 1024, streamed
