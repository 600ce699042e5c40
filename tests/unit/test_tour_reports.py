"""The reports the README tour ingests ship with the repository and parse to their counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from domain.scanners import parse_report

TOUR = Path(__file__).resolve().parents[2] / "docs" / "examples" / "scans"


@pytest.mark.parametrize(
    ("name", "total", "medium"),
    [("semgrep-tornado-4.5.json", 87, 11), ("semgrep-tornado-5.0.json", 89, 7)],
)
def test_tour_report_parses_to_the_counts_its_readme_states(name: str, total: int, medium: int):
    report = parse_report((TOUR / name).read_bytes())
    severities = Counter(f.severity for f in report.findings)
    assert len(report.findings) == total
    assert severities["medium"] == medium


def test_scan_parse_piped_into_head_exits_quietly_when_the_reader_closes_early():
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "scan", "parse", str(TOUR / TOUR_REPORT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # what `head` does once it has its lines (here: before the first)
    err = proc.stderr.read()
    assert proc.wait(60) == 0, err
    assert b"Broken pipe" not in err


TOUR_REPORT = "semgrep-tornado-4.5.json"
