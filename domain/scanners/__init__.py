"""Pure scanner-report parsers: detect a report's format and normalize its findings.

Every supported format is registered once, in FORMATS, in detection order (most distinctive
signatures first). Parsing is all-or-nothing: any problem raises ReportError and no finding
of that report is returned.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from types import MappingProxyType
from typing import BinaryIO

import ijson

from domain.errors import ReportError
from domain.scanners import (
    bandit,
    checkov,
    cyclonedx,
    gitleaks,
    grype,
    npm_audit,
    pip_audit,
    sarif,
    semgrep,
    snyk,
    trivy,
)
from domain.scanners.fingerprint import finalize
from domain.scanners.jsonstream import (
    HEAD_SIZE,
    HeadInfo,
    Readable,
    Source,
    json_error,
    sniff_head,
    too_deep,
)
from domain.scanners.model import NormalizedFinding, ParsedReport, ScannerFormat

__all__ = [
    "FORMATS",
    "NormalizedFinding",
    "ParsedReport",
    "ReportError",
    "ScannerFormat",
    "detect_format",
    "parse_report",
]

FORMATS: Mapping[str, ScannerFormat] = MappingProxyType(
    {
        module.FORMAT.name: module.FORMAT
        for module in (
            sarif,
            cyclonedx,
            npm_audit,
            trivy,
            grype,
            bandit,
            semgrep,
            checkov,
            gitleaks,
            snyk,
            pip_audit,
        )
    }
)
_ALIASES = {"pip-audit": "pip_audit", "npm": "npm_audit", "npm-audit": "npm_audit"}
_FAILURES = (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError)
_SHOWN_KEYS = 8


def detect_format(head: bytes) -> str:
    """Name the format of a report from its first ~64 KiB; ReportError says why when unknown."""
    if not head:
        raise ReportError("The report is empty (0 bytes); expected a JSON scanner report.")
    return _detect(sniff_head(head.removeprefix(b"\xef\xbb\xbf"), whole=len(head) < HEAD_SIZE))


def parse_report(source: bytes | BinaryIO, tool: str | None = None) -> ParsedReport:
    """Parse a whole report (auto-detected, or the format `tool` names) into normalized findings."""
    stream: Readable = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    name = tool or "scanner"
    try:
        report = Source(stream)
        chosen = _choose(report.info, tool)
        name = chosen.name
        raw = chosen.parse(report)
        findings = finalize(raw.drafts)
    except ReportError:
        raise
    except ijson.JSONError as exc:
        raise json_error(exc) from exc
    except RecursionError as exc:
        raise too_deep() from exc
    except _FAILURES as exc:
        raise ReportError(
            f"The {name} report could not be parsed ({type(exc).__name__}: {exc}); "
            "nothing from it was ingested."
        ) from exc
    return ParsedReport(chosen.name, raw.tool, raw.tool_version, findings)


def _detect(info: HeadInfo) -> str:
    """Return the first registered format whose signature matches the head."""
    for scanner in FORMATS.values():
        if scanner.sniff(info):
            return scanner.name
    raise ReportError(_unknown(info))


def _unknown(info: HeadInfo) -> str:
    """Explain an unrecognised report: what its root is and which top-level keys it has."""
    supported = ", ".join(FORMATS)
    if info.root not in ("object", "array"):
        return f"Unrecognised report format: a bare JSON value is no scanner report ({supported})."
    keys = ", ".join(repr(key[:40]) for key in info.top[:_SHOWN_KEYS]) or "none"
    scope = "" if info.complete else " in the first 64 KiB"
    return (
        f"Unrecognised report format: the top-level keys{scope} ({keys}) match none of the "
        f"supported formats ({supported})."
    )


def _forced(tool: str) -> ScannerFormat:
    """Look up the format a caller named (format names and common tool spellings)."""
    key = tool.strip().lower()
    key = _ALIASES.get(key, key.replace("-", "_"))
    if key not in FORMATS:
        raise ReportError(f"Unknown report format {tool!r}; expected one of: {', '.join(FORMATS)}.")
    return FORMATS[key]


def _choose(info: HeadInfo, tool: str | None) -> ScannerFormat:
    """Pick the parser: detected, or forced by `tool` unless the head clearly says otherwise."""
    if tool is None:
        return FORMATS[_detect(info)]
    forced = _forced(tool)
    try:
        detected = _detect(info)
    except ReportError:
        return forced
    if detected == forced.name or info.empty:
        return forced
    if detected == sarif.NAME:
        return FORMATS[sarif.NAME]
    raise ReportError(
        f"The report looks like {detected} output, not {forced.name}; "
        "omit the tool to auto-detect or name the right one."
    )
