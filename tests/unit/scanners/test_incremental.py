"""The streamed formats convert findings while the JSON is still being read, not after it."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest

from domain.errors import ReportError
from domain.scanners import FORMATS, parse_report
from domain.scanners.jsonstream import Source
from tests.unit.scanners.test_formats import (
    CHECKOV_LIST,
    GITLEAKS,
    GRYPE,
    PIP_AUDIT,
    TRIVY,
    bandit,
    bandit_result,
    semgrep,
    semgrep_result,
)
from tests.unit.scanners.test_stream import assert_same, streamed

COPIES = 3000


class Counting(io.BytesIO):
    """A report stream that remembers how many bytes were read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self.taken += len(chunk)
        return chunk


def repeated(document: Any, key: str | None, copies: int = COPIES) -> Any:
    """Repeat the finding list at `key` (the document itself when None) `copies` times."""
    document = copy.deepcopy(document)
    if key is None:
        return [copy.deepcopy(entry) for _ in range(copies) for entry in document]
    document[key] = [copy.deepcopy(entry) for _ in range(copies) for entry in document[key]]
    return document


def big_checkov(*, type_last: bool = False) -> list[dict[str, Any]]:
    """Checkov's list form with many failed checks per check type, check_type maybe last."""
    document = copy.deepcopy(CHECKOV_LIST)
    for report in document:
        failed = report["results"]["failed_checks"]
        report["results"]["failed_checks"] = [
            {**check, "file_line_range": [n, n + 1]} for n in range(COPIES) for check in failed
        ]
        if type_last:
            report["check_type"] = report.pop("check_type")
    return document


BIG: dict[str, Any] = {
    "semgrep": semgrep(*(semgrep_result(n) for n in range(1, COPIES))),
    "bandit": bandit(*(bandit_result(n) for n in range(2, COPIES))),
    "trivy": repeated(TRIVY, "Results", COPIES // 3),
    "grype": repeated(GRYPE, "matches"),
    "checkov": big_checkov(),
    "gitleaks": repeated(GITLEAKS, None, 2 * COPIES),
    "pip_audit": repeated(PIP_AUDIT, "dependencies", 2 * COPIES),
}


@pytest.mark.parametrize("name", sorted(BIG))
def test_first_draft_comes_before_the_report_is_read_when_format_streams(name: str) -> None:
    data = json.dumps(BIG[name]).encode()
    assert len(data) > 1_000_000
    stream = Counting(data)
    with Source(stream) as source:
        raw = FORMATS[name].parse(source)
        drafts = iter(raw.drafts)
        next(drafts)
        assert stream.taken < len(data) // 4, (stream.taken, len(data))
        rest = sum(1 for _ in drafts)
    assert stream.taken == len(data)
    assert rest + 1 >= COPIES // 2


@pytest.mark.parametrize("name", sorted(BIG))
def test_stream_matches_parse_report_when_a_streamed_format_is_big(
    name: str, tmp_path: Path
) -> None:
    assert assert_same(json.dumps(BIG[name]).encode(), tmp_path) > 0


def test_semgrep_version_is_read_when_it_follows_the_results(tmp_path: Path) -> None:
    document = semgrep(*(semgrep_result(n) for n in range(1, 50)))
    document["version"] = document.pop("version")
    data = json.dumps(document).encode()
    assert parse_report(data).tool_version == "1.90.0"
    with streamed(data, tmp_path) as stream:
        assert stream.tool_version == "1.90.0"
    assert_same(data, tmp_path)


@pytest.mark.parametrize("type_last", [False, True])
def test_checkov_kinds_follow_check_type_when_it_comes_before_or_after_results(
    type_last: bool, tmp_path: Path
) -> None:
    data = json.dumps(big_checkov(type_last=type_last)).encode()
    report = parse_report(data, tool="checkov")
    kinds = {(finding.rule_id, finding.kind) for finding in report.findings}
    assert kinds == {("CKV_K8S_20", "config"), ("CKV_SECRET_2", "secret")}
    assert report.tool_version == "3.2.0"
    assert_same(data, tmp_path, tool="checkov")


def test_checkov_kinds_hold_when_only_a_later_check_type_follows_its_results(
    tmp_path: Path,
) -> None:
    document = big_checkov()
    document[1]["check_type"] = "sca_package"
    document[1]["check_type"] = document[1].pop("check_type")
    data = json.dumps(document).encode()
    kinds = {(finding.rule_id, finding.kind) for finding in parse_report(data).findings}
    assert kinds == {("CKV_K8S_20", "config"), ("CKV_SECRET_2", "dependency")}
    assert_same(data, tmp_path)


def test_checkov_single_report_is_classified_when_check_type_is_last(tmp_path: Path) -> None:
    single = big_checkov(type_last=True)[1]
    data = json.dumps(single).encode()
    assert {finding.kind for finding in parse_report(data, tool="checkov").findings} == {"secret"}
    assert_same(data, tmp_path, tool="checkov")


@pytest.mark.parametrize("name", ["semgrep", "bandit", "grype", "gitleaks"])
def test_report_error_leaves_nothing_when_the_last_finding_is_malformed(
    name: str, tmp_path: Path
) -> None:
    document = copy.deepcopy(BIG[name])
    (document if isinstance(document, list) else next(iter(_lists(document)))).append(42)
    data = json.dumps(document).encode()
    with pytest.raises(ReportError, match="#"):
        parse_report(data)
    with pytest.raises(ReportError, match="#"):
        streamed(data, tmp_path)
    assert not list(tmp_path.iterdir())


def _lists(document: dict[str, Any]) -> list[list[Any]]:
    """Return the document's finding list (its longest top-level list)."""
    return sorted((v for v in document.values() if isinstance(v, list)), key=len, reverse=True)
