"""Hostile reports: shape limits hold before any parser builds, unsafe text is kept escaped."""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from domain.errors import ReportError, ReportTooComplex
from domain.scanners import FORMATS, detect_format, jsonstream, parse_report, stream_report
from domain.scanners.jsonstream import (
    MAX_DEPTH,
    MAX_DOCUMENT_EVENTS,
    MAX_ITEM_EVENTS,
    MAX_META_EVENTS,
    MAX_PATH,
    MAX_TOKEN,
)
from domain.scanners.model import NormalizedFinding
from domain.scanners.safe_text import escape, is_safe
from tests.unit.scanners.test_formats import (
    DOCUMENTS,
    sarif,
    sarif_result,
    semgrep,
    semgrep_result,
)

#: One of each kind of character PostgreSQL text/jsonb or a UTF-8 encoder cannot carry.
UNSAFE = "\x00\x01\x1b\x7f\x85\x9f\ud800"
TEXT_FIELDS = (
    "tool",
    "rule_id",
    "title",
    "severity",
    "confidence",
    "kind",
    "path",
    "package",
    "installed_version",
    "fixed_version",
    "message",
    "fingerprint",
)


def peak_bytes(action: Callable[[], object]) -> int:
    """Return the peak of Python allocations while running action (its error swallowed)."""
    tracemalloc.start()
    try:
        action()
    except ReportError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def stream(data: bytes) -> None:
    with stream_report(io.BytesIO(data)) as report:
        for _ in report.chunks():
            pass


def texts(finding: NormalizedFinding) -> Iterator[str]:
    for name in TEXT_FIELDS:
        value = getattr(finding, name)
        if isinstance(value, str):
            yield value
    yield from finding.cwe
    yield from finding.cve


#: Keys of the free text a tool copies from code or writes for people (not ids, versions).
FREE_TEXT = ("message", "text", "title", "description", "snippet", "lines", "code", "path")
FREE_TEXT += ("uri", "file", "match", "content", "check_name", "issue_text", "overview")


def dirty(value: Any, mark: str = UNSAFE, *, free: bool = False) -> Any:
    """Append unsafe characters to the free-text strings (keys kept) of a decoded document."""
    if isinstance(value, dict):
        return {
            key: dirty(item, mark, free=any(word in key.lower() for word in FREE_TEXT))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [dirty(item, mark, free=free) for item in value]
    if isinstance(value, str) and value and free:
        return f"{value} {mark}"
    return value


# --- shape limits ----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [20_000, 100_000])
def test_deep_report_is_refused_in_bounded_memory_when_nested_past_the_limit(depth: int) -> None:
    data = b'{"runs":' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(ReportTooComplex, match=f"deeper than {MAX_DEPTH} levels"):
        parse_report(data)
    assert peak_bytes(lambda: stream(data)) < 8 * 1024 * 1024


def test_deep_head_is_refused_when_only_detecting_the_format() -> None:
    with pytest.raises(ReportTooComplex, match="deeper than"):
        detect_format(b'{"runs":' + b"[" * 30_000)


def test_report_at_the_depth_limit_is_parsed_when_not_past_it() -> None:
    nested = json.loads("[" * (MAX_DEPTH - 6) + "]" * (MAX_DEPTH - 6))
    assert len(parse(semgrep(semgrep_result(3, deep=nested))).findings) == 1


def test_long_key_path_is_refused_in_bounded_memory_when_keys_nest_past_the_limit() -> None:
    key = "k" * 1000
    inner: Any = {"": 0}
    for _ in range(MAX_PATH // 1000 + 1):
        inner = {key: inner}
    wide = {f"x{n}": 0 for n in range(20_000)}
    data = json.dumps(semgrep(semgrep_result(3, deep=inner, wide=wide))).encode()
    with pytest.raises(ReportTooComplex, match=f"key path longer than {MAX_PATH}"):
        parse_report(data)


def test_huge_token_is_refused_when_one_string_passes_the_limit() -> None:
    data = b'{"results": [{"check_id": "' + b"A" * (MAX_TOKEN + 70_000) + b'"}]}'
    with pytest.raises(ReportTooComplex, match="token longer than"):
        parse_report(data)
    assert peak_bytes(lambda: stream(data)) < 2 * MAX_TOKEN + 8 * 1024 * 1024


def test_wide_item_is_refused_in_bounded_memory_when_one_result_holds_too_many_values() -> None:
    data = json.dumps(semgrep(semgrep_result(3, wide=[0] * (MAX_ITEM_EVENTS + 10)))).encode()
    with pytest.raises(ReportTooComplex, match=f"more than {MAX_ITEM_EVENTS} JSON values"):
        parse_report(data)
    assert peak_bytes(lambda: stream(data)) < 16 * 1024 * 1024


def test_wide_item_is_refused_when_its_values_are_keys_of_one_object() -> None:
    wide = {str(n): 0 for n in range(MAX_ITEM_EVENTS // 2 + 10)}
    with pytest.raises(ReportTooComplex, match="JSON values"):
        parse(semgrep(semgrep_result(3, wide=wide)))


def test_report_is_refused_when_it_holds_more_results_than_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jsonstream, "MAX_ITEMS", 50)
    assert len(parse(sarif(*[sarif_result(n) for n in range(1, 51)])).findings) == 50
    with pytest.raises(ReportTooComplex, match="more than 50 results"):
        parse(sarif(*[sarif_result(n) for n in range(1, 52)]))
    with pytest.raises(ReportTooComplex, match="more than 50 results"):
        parse_report(b'{"version":"2.1.0","runs":[{"results":[' + b"{}," * 60 + b"{}]}]}")


def test_many_results_are_parsed_when_each_is_small() -> None:
    results = [semgrep_result(n) for n in range(1, 3000)]
    assert len(parse(semgrep(*results)).findings) == 2999


def test_big_result_is_parsed_when_it_stays_under_the_item_limit() -> None:
    report = parse(semgrep(semgrep_result(3, wide=[0] * (MAX_ITEM_EVENTS - 1000))))
    assert len(report.findings) == 1


def test_whole_document_format_is_refused_when_it_holds_too_many_values() -> None:
    document = dict(DOCUMENTS["cyclonedx"])  # type: ignore[arg-type]
    document["padding"] = [0] * (MAX_DOCUMENT_EVENTS + 10)
    with pytest.raises(ReportTooComplex, match=f"more than {MAX_DOCUMENT_EVENTS}"):
        parse(document)


def test_sarif_is_refused_when_its_rules_hold_too_many_values() -> None:
    log = sarif(sarif_result(3))
    log["runs"][0]["tool"]["driver"]["rules"] = [{"id": "r"}] * (MAX_META_EVENTS // 3 + 10)
    with pytest.raises(ReportTooComplex, match="of metadata"):
        parse(log)


def test_limit_refusal_is_a_report_error_when_callers_catch_the_domain_error() -> None:
    assert issubclass(ReportTooComplex, ReportError)
    assert ReportTooComplex.code == "report-too-complex"


# --- unsafe text -----------------------------------------------------------------------------


def parse(document: object) -> Any:
    return parse_report(json.dumps(document).encode())


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_finding_is_kept_with_unsafe_characters_escaped_when_any_format_carries_them(
    name: str,
) -> None:
    clean = parse(DOCUMENTS[name])
    report = parse(dirty(DOCUMENTS[name]))
    assert report.format == name
    assert len(report.findings) == len(clean.findings)
    assert report.sanitized >= 1
    for finding in report.findings:
        for value in texts(finding):
            assert is_safe(value), (name, value)
            value.encode("utf-8")
    assert is_safe(report.tool) and is_safe(report.tool_version or "")
    assert any("\\u0000" in finding.message for finding in report.findings)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_fingerprints_and_count_are_unchanged_when_the_report_is_clean(name: str) -> None:
    data = json.dumps(DOCUMENTS[name]).encode()
    whole = parse_report(data)
    assert whole.sanitized == 0
    with stream_report(io.BytesIO(data)) as streamed:
        assert streamed.sanitized == 0
        chunked = [finding for chunk in streamed.chunks() for finding in chunk]
    assert chunked == list(whole.findings)


def test_stream_and_whole_parse_agree_when_text_is_escaped() -> None:
    data = json.dumps(dirty(semgrep(semgrep_result(3), semgrep_result(9)))).encode()
    whole = parse_report(data)
    with stream_report(io.BytesIO(data)) as streamed:
        chunked = [finding for chunk in streamed.chunks() for finding in chunk]
        assert streamed.sanitized == whole.sanitized == 2
    assert chunked == list(whole.findings)


def test_escape_writes_each_unsafe_character_as_six_visible_characters() -> None:
    assert escape("a\x00b\x85c\ud800") == "a\\u0000b\\u0085c\\ud800"
    clean = "tab\tline\nreturn\r ok é ✓ \U0001f600 \ufffd"
    assert escape(clean) is clean
    assert all(not is_safe(char) for char in UNSAFE)


def test_every_format_is_covered_when_checking_unsafe_text() -> None:
    assert set(DOCUMENTS) == set(FORMATS)
