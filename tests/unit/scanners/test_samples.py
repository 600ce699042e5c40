"""The acceptance conditions of shared/samples/check.py, asserted in-process on every sample."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from domain.errors import ReportError
from domain.scanners import parse_report

SEVERITIES = {"critical", "high", "medium", "low", "info"}
KEYS = {"fingerprint", "tool", "rule_id", "severity", "path", "line", "title"}
# Bandit, Semgrep and Checkov spell rule ids identically in their JSON and SARIF output
# (B506 / python.yaml-load-unsafe / CKV_K8S_20 in both), so the (rule_id, path) comparison
# holds for every tool sampled; a tool whose SARIF renamed its rules would be listed here.
RULE_IDS_DIFFER: frozenset[str] = frozenset()


def samples_dir() -> Path:
    """Return PEARL_SAMPLES_DIR, else /work/shared/samples/scans next to the project."""
    env = os.environ.get("PEARL_SAMPLES_DIR")
    return (
        Path(env)
        if env
        else Path(__file__).resolve().parents[3].parent / "shared" / "samples" / "scans"
    )


SAMPLES = samples_dir()
EXPECTED: dict[str, Any] = (
    json.loads((SAMPLES / "expected.json").read_text())
    if (SAMPLES / "expected.json").is_file()
    else {}
)


def norm(path: object) -> str:
    """Normalize a path exactly as check.py does."""
    text = str(path or "")
    while text.startswith(("./", "/")):
        text = text[2:] if text.startswith("./") else text[1:]
    return text


def rows_of(name: str) -> list[dict[str, Any]]:
    """Parse a sample and return its findings as the JSON Lines `pearl scan parse` prints."""
    with (SAMPLES / name).open("rb") as stream:
        report = parse_report(stream)
    return [json.loads(json.dumps(finding.to_dict())) for finding in report.findings]


def params(names: list[str], what: str) -> list[Any]:
    """Parametrize over names, or one skipped case explaining what is missing."""
    if names:
        return names
    reason = f"no {what} in {SAMPLES} (set PEARL_SAMPLES_DIR to the samples' scans directory)"
    return [pytest.param("absent", marks=pytest.mark.skip(reason=reason))]


@pytest.mark.parametrize("name", params(sorted(EXPECTED), "expected.json samples"))
def test_findings_meet_the_acceptance_check_when_parsing_a_sample(name: str) -> None:
    expected = EXPECTED[name]
    rows = rows_of(name)
    assert rows, f"{name}: no findings"
    assert rows[0].keys() >= KEYS, f"{name}: missing keys {KEYS - rows[0].keys()}"
    assert {row.get("severity") for row in rows} <= SEVERITIES
    assert sorted({norm(row.get("path")) for row in rows}) == expected["paths"]
    count = len(rows)
    assert expected["distinct_rule_path"] <= count <= expected["distinct_rule_path_line"]
    assert len({row.get("fingerprint") for row in rows}) == count, "repeated fingerprint"


BAD = sorted(path.name for path in SAMPLES.glob("bad-*")) if SAMPLES.is_dir() else []


@pytest.mark.parametrize("name", params(BAD, "bad-* samples"))
def test_report_error_is_clear_when_parsing_a_bad_sample(name: str) -> None:
    try:
        rows_of(name)
    except ReportError as error:
        message = str(error).strip()
        assert message and len(message.splitlines()) <= 3
    else:
        assert name == "bad-huge-string.json", f"{name} parsed without error"


PAIRS = sorted(
    name.removesuffix(".json")
    for name in EXPECTED
    if name.endswith(".json") and f"{name.removesuffix('.json')}.sarif" in EXPECTED
)


@pytest.mark.parametrize("stem", params(PAIRS, "JSON/SARIF sample pairs"))
def test_rule_path_pairs_match_when_one_scan_is_read_as_json_and_as_sarif(stem: str) -> None:
    tool = stem.split("-", 1)[0]
    if tool in RULE_IDS_DIFFER:
        pytest.skip(f"{tool} names its rules differently in SARIF")
    from_json = {(row["rule_id"], norm(row["path"])) for row in rows_of(f"{stem}.json")}
    from_sarif = {(row["rule_id"], norm(row["path"])) for row in rows_of(f"{stem}.sarif")}
    assert from_json == from_sarif
