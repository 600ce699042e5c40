"""Pure scanner-report parsers: detect a report's format and normalize its findings.

Every supported format is registered once, in FORMATS, in detection order (most distinctive
signatures first). Parsing is all-or-nothing: any problem raises ReportError and no finding
of that report is returned. parse_report returns every finding at once; stream_report validates
the same way but keeps the findings in a spill file and hands them out in chunks, so big reports
cost only a few bytes of memory per finding.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import BinaryIO, NoReturn

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
from domain.scanners.fingerprint import Fingerprinter, Marks, finalize
from domain.scanners.jsonstream import (
    HEAD_SIZE,
    Guard,
    HeadInfo,
    Readable,
    Source,
    json_error,
    sniff_head,
    too_deep,
)
from domain.scanners.model import Draft, NormalizedFinding, ParsedReport, ScannerFormat
from domain.scanners.safe_text import Sanitizer
from domain.scanners.spill import SpillFile

__all__ = [
    "FORMATS",
    "NormalizedFinding",
    "ParsedReport",
    "ReportError",
    "ReportStream",
    "ScannerFormat",
    "detect_format",
    "parse_report",
    "stream_report",
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
    head = head.removeprefix(b"\xef\xbb\xbf")
    Guard(io.BytesIO()).check_all(head)
    return _detect(sniff_head(head, whole=len(head) < HEAD_SIZE))


def parse_report(source: bytes | BinaryIO, tool: str | None = None) -> ParsedReport:
    """Parse a whole report (auto-detected, or the format `tool` names) into normalized findings."""
    stream: Readable = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    name = tool or "scanner"
    try:
        with Source(stream) as report:
            chosen = _choose(report.info, tool)
            name = chosen.name
            raw = chosen.parse(report)
            safe = Sanitizer()
            findings = finalize(safe.drafts(raw.drafts))
            tool, version = safe.text(raw.tool) or raw.tool, safe.text(raw.tool_version)
    except Exception as exc:
        _reraise(exc, name)
    return ParsedReport(chosen.name, tool, version, findings, sanitized=safe.count)


@dataclass(frozen=True, slots=True)
class ReportStream:
    """A completely validated report whose findings wait in a spill file, handed out in chunks.

    Only a few bytes per finding stay in memory (which drafts to keep, occurrence indexes).
    `sanitized` counts the findings (and tool name/version) whose text had characters that
    PostgreSQL or JSON cannot carry, escaped visibly (domain/scanners/safe_text.py).
    chunks() yields exactly the findings parse_report would return, in the same (report) order
    and with the same fingerprints. It may be called again, and by several threads at once
    (reads are positioned, nothing is shared but the read-only spill file), until close().
    Use it as a context manager, or call close(), to delete the spill file.
    """

    format: str
    tool: str
    tool_version: str | None
    count: int
    _spill: SpillFile[Draft] = field(repr=False, compare=False)
    _marks: Marks = field(repr=False, compare=False)
    sanitized: int = 0

    def chunks(self, size: int = 5000) -> Iterator[tuple[NormalizedFinding, ...]]:
        """Yield the unique findings in report order, `size` at a time (the last may be shorter)."""
        if size < 1:
            raise ValueError("chunk size must be at least 1")
        if self._spill.closed:
            raise ValueError("the report stream is closed")
        chunk: list[NormalizedFinding] = []
        start = 0
        for batch in self._spill.batches():
            for finding in self._marks.apply(batch, start):
                chunk.append(finding)
                if len(chunk) == size:
                    yield tuple(chunk)
                    chunk.clear()
            start += len(batch)
        if chunk:
            yield tuple(chunk)

    def close(self) -> None:
        """Delete the spill file; idempotent."""
        self._spill.close()

    def __enter__(self) -> ReportStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def stream_report(
    source: BinaryIO, tool: str | None = None, spill_dir: str | None = None
) -> ReportStream:
    """Parse and validate a whole report, keeping its findings on disk instead of in memory.

    Any problem raises ReportError here, before anything is handed out (nothing is left on
    disk then). Spill files are anonymous temporary files in `spill_dir` (default: the system
    temporary directory): they never have a name and vanish when closed or when the process ends.
    """
    name = tool or "scanner"
    spill: SpillFile[Draft] = SpillFile(Draft, spill_dir)
    try:
        with Source(source, spill=True, spill_dir=spill_dir) as report:
            chosen = _choose(report.info, tool)
            name = chosen.name
            raw = chosen.parse(report)
            keeper = Fingerprinter()
            safe = Sanitizer()
            for draft in safe.drafts(raw.drafts):
                keeper.add(draft)
                spill.append(draft)
            spill.flush()
            marks = keeper.finish()
            tool, version = safe.text(raw.tool) or raw.tool, safe.text(raw.tool_version)
    except BaseException as exc:
        spill.close()
        if isinstance(exc, Exception):
            _reraise(exc, name)
        raise
    return ReportStream(chosen.name, tool, version, marks.count, spill, marks, sanitized=safe.count)


def _reraise(exc: Exception, name: str) -> NoReturn:
    """Raise what a parsing failure means for the caller: always a ReportError for bad input."""
    if isinstance(exc, ReportError):
        raise exc
    if isinstance(exc, ijson.JSONError):
        raise json_error(exc) from exc
    if isinstance(exc, RecursionError):
        raise too_deep() from exc
    if isinstance(exc, _FAILURES):
        raise ReportError(
            f"The {name} report could not be parsed ({type(exc).__name__}: {exc}); "
            "nothing from it was ingested."
        ) from exc
    raise exc


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
