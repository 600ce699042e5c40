"""Peak memory of parsing ~100 MB reports: stream_report + chunks must stay flat.

Measured for SARIF, Semgrep JSON and Bandit JSON, whose parsers convert findings while the
document streams in (the other streamed formats share the same path).
A benchmark, not a unit test: it runs only with PEARL_PERF=1 (a few minutes). Each report is
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
TARGET_BYTES = 100_000_000
LIMIT_MB = 200

GENERATE = """
import sys
from services.bench.ingest import sarif_report
with open(sys.argv[1], "wb") as out:
    out.write(sarif_report(int(sys.argv[2]), int(sys.argv[3])))
"""

# Semgrep and Bandit reports are written result by result until they reach the target size;
# every finding has its own line and snippet, so none collapse as duplicates.
GENERATE_TOOL = """
import json, sys

path, tool, target, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def semgrep(i):
    rule = i % 50
    line = 10 + i % 500
    return {
        "check_id": f"python.bench.security.rule-{rule}",
        "path": f"src/pkg{i % 40}/module_{i % files}.py",
        "start": {"line": line, "col": 5, "offset": 40 * line},
        "end": {"line": line, "col": 31, "offset": 40 * line + 26},
        "extra": {
            "message": f"Rule {rule}: user input reaches a dangerous call.",
            "metadata": {
                "cwe": [f"CWE-{70 + rule}: Improper Neutralization"],
                "owasp": ["A03:2021 - Injection"],
                "category": "security",
                "confidence": "MEDIUM",
                "references": [f"https://semgrep.dev/r/python.bench.security.rule-{rule}"],
                "source": f"https://semgrep.dev/r/python.bench.security.rule-{rule}",
            },
            "severity": "WARNING",
            "fingerprint": "requires login",
            "lines": f"    call_{i}(request.args)",
            "metavars": {},
            "is_ignored": False,
            "validation_state": "NO_VALIDATOR",
            "engine_kind": "OSS",
        },
    }

def bandit(i):
    rule = i % 50
    line = 10 + i % 500
    return {
        "code": f"{line - 1} def handler(request):\\n{line}     call_{i}(request.args)\\n"
        f"{line + 1}     return None\\n",
        "col_offset": 4,
        "end_col_offset": 30,
        "filename": f"src/pkg{i % 40}/module_{i % files}.py",
        "issue_confidence": "HIGH",
        "issue_cwe": {"id": 70 + rule, "link": f"https://cwe.mitre.org/data/{70 + rule}.html"},
        "issue_severity": ("LOW", "MEDIUM", "HIGH")[i % 3],
        "issue_text": f"Rule B{600 + rule}: a call with user input was identified.",
        "line_number": line,
        "line_range": [line],
        "more_info": f"https://bandit.readthedocs.io/en/1.7.9/plugins/b{600 + rule}.html",
        "test_id": f"B{600 + rule}",
        "test_name": f"bench_rule_{rule}",
    }

if tool == "semgrep":
    head = '{"version": "1.90.0", "results": ['
    tail = '], "errors": [], "paths": {"scanned": []}, "skipped_rules": []}'
    result = semgrep
else:
    metrics = {"_totals": {"loc": 500 * files, "nosec": 0}}
    for n in range(files):
        metrics[f"src/pkg{n % 40}/module_{n}.py"] = {"loc": 500, "nosec": 0}
    head = '{"errors": [], "generated_at": "2024-01-01T00:00:00Z", "metrics": '
    head += json.dumps(metrics) + ', "results": ['
    tail = ']}'
    result = bandit
count = written = 0
with open(path, "w", encoding="utf-8") as out:
    written += out.write(head)
    while written < target:
        written += out.write((", " if count else "") + json.dumps(result(count)))
        count += 1
    out.write(tail)
print(count)
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


def generate(tool: str, report: Path) -> int:
    """Write a ~100 MB report of `tool`'s format in a subprocess; return its result count."""
    if tool == "sarif":
        run(GENERATE, str(report), str(RESULTS), str(FILES))
        return RESULTS
    return int(run(GENERATE_TOOL, str(report), tool, str(TARGET_BYTES), str(FILES)))


@pytest.mark.parametrize("tool", ["sarif", "semgrep", "bandit"])
def test_peak_rss_stays_under_200_mb_when_streaming_a_100_mb_report(
    tool: str, tmp_path: Path
) -> None:
    report = tmp_path / f"big.{tool}.json"
    results = generate(tool, report)
    print(f"\n{tool} report: {report.stat().st_size / 1e6:.0f} MB, {results} results")
    streamed = measure(report, "stream", tmp_path)
    assert streamed["findings"] == results
    if os.environ.get("PEARL_PERF_COMPARE"):
        whole = measure(report, "parse", tmp_path)
        assert whole["findings"] == streamed["findings"]
    assert streamed["peak_kib"] < LIMIT_MB * 1024, streamed
