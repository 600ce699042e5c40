"""Bandit JSON (`bandit -f json`): one finding per results[] entry, streamed."""

from __future__ import annotations

import re

from domain.scanners.common import (
    JsonObject,
    code_key,
    cwes,
    each,
    first_line,
    get,
    integer,
    level,
    listing,
    norm_path,
    text,
)
from domain.scanners.jsonstream import HeadInfo, Source
from domain.scanners.model import Draft, RawReport, ScannerFormat

NAME = "bandit"
_LEVELS = {"high": "high", "medium": "medium", "low": "low", "undefined": "info"}
_NUMBERED = re.compile(r"^\s*(\d+)[ \t]?(.*)$")
_VERSION = re.compile(r"/en/(\d[\w.]*)/")


def sniff(head: HeadInfo) -> bool:
    """Recognise Bandit by `generated_at` beside `metrics`/`results`, or its result fields."""
    if head.root != "object":
        return False
    stamped = "generated_at" in head.top and ("metrics" in head.top or "results" in head.top)
    return stamped or head.any("results.item.test_id", "results.item.issue_severity")


def parse(source: Source) -> RawReport:
    """Stream results[]; Bandit's version is recovered from the results' `more_info` URLs."""
    scan = source.scan("results.item")
    versions: list[str] = []
    drafts = each(scan.items(), "Bandit result", lambda item: _draft(item, versions))
    return RawReport(NAME, None).then_version(drafts, lambda: versions[0] if versions else None)


def _draft(result: JsonObject, versions: list[str]) -> Draft:
    """Convert one Bandit result, noting the Bandit version its documentation URL names."""
    match = _VERSION.search(text(result, "more_info") or "")
    if match and not versions:
        versions.append(match.group(1))
    rule_id = text(result, "test_id") or text(result, "test_name") or "unknown"
    message = text(result, "issue_text") or rule_id
    line = integer(result, "line_number")
    lines = [n for n in (integer(value) for value in listing(result, "line_range")) if n]
    return Draft(
        tool=NAME,
        rule_id=rule_id,
        title=first_line(message),
        severity=level(text(result, "issue_severity"), _LEVELS) or "info",
        kind="code",
        message=message,
        key=code_key(None, flagged_lines(text(result, "code"), lines or [line or 0]), message),
        confidence=(text(result, "issue_confidence") or "").lower() or None,
        path=norm_path(text(result, "filename")),
        line=line,
        end_line=max(lines) if lines else line,
        cwe=cwes(get(result, "issue_cwe", "id")),
    )


def flagged_lines(code: str | None, wanted: list[int]) -> str | None:
    """Keep only the flagged lines of Bandit's numbered code window, numbers stripped.

    The window also shows neighbouring lines; leaving them out keeps the key stable when
    only a neighbour changes, and matches the snippet Bandit's SARIF output carries.
    """
    kept: list[str] = []
    for row in (code or "").splitlines():
        match = _NUMBERED.match(row)
        if match and int(match.group(1)) in wanted:
            kept.append(match.group(2))
    return "\n".join(kept) or None


FORMAT = ScannerFormat(NAME, sniff, parse)
