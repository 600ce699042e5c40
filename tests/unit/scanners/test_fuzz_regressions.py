"""Inputs the fuzzer found (minimized), kept as regression tests run through the same oracle."""

from __future__ import annotations

import pytest

from domain.scanners import parse_report
from tests.fuzz.oracle import run_one

#: (name, fuzz input: selector byte 0 = auto-detect, then the report).
FOUND = [
    # atheris, pre-fix code, 5 s in: a raw DEL byte inside a pip-audit description was handed
    # through into the finding's message (and any unsafe character was, in every parser).
    (
        "pip-audit-raw-del-in-description",
        b"\x00"
        b'{"dependencies": [{"name": "Flask_Cors", "version": "3.0.8", "vulns": [{"id": '
        b'"PYSEC-2020-43", "fix_versions": ["3.0.9"], "description": "Direct\x7fry"}]}]}',
    ),
]


@pytest.mark.parametrize("data", [data for _, data in FOUND], ids=[name for name, _ in FOUND])
def test_fuzzer_finding_is_handled_when_replayed(data: bytes) -> None:
    run_one(data)


def test_raw_del_is_escaped_when_a_pip_audit_description_carries_it() -> None:
    report = parse_report(FOUND[0][1][1:])
    assert [finding.message for finding in report.findings] == ["Direct\\u007fry"]
    assert report.sanitized == 1
