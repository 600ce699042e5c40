"""Value types shared by every scanner parser: the normalized finding, the report and drafts."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from domain.scanners.jsonstream import HeadInfo, Source

SEVERITIES = ("critical", "high", "medium", "low", "info")
KINDS = ("code", "dependency", "secret", "config")


@dataclass(frozen=True, slots=True)
class NormalizedFinding:
    """One scanner finding in PeaRL's vocabulary, whatever tool and format produced it."""

    tool: str
    rule_id: str
    title: str
    severity: str
    confidence: str | None
    kind: str
    path: str | None
    line: int | None
    end_line: int | None
    package: str | None
    installed_version: str | None
    fixed_version: str | None
    cwe: tuple[str, ...]
    cve: tuple[str, ...]
    message: str
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of every field (tuples become lists) for JSON Lines output."""
        return {
            "tool": self.tool,
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": self.severity,
            "confidence": self.confidence,
            "kind": self.kind,
            "path": self.path,
            "line": self.line,
            "end_line": self.end_line,
            "package": self.package,
            "installed_version": self.installed_version,
            "fixed_version": self.fixed_version,
            "cwe": list(self.cwe),
            "cve": list(self.cve),
            "message": self.message,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True, slots=True)
class ParsedReport:
    """A whole scanner report, parsed completely: never a partial result.

    `sanitized` counts the findings (and tool name/version) whose unsafe characters were
    escaped (domain/scanners/safe_text.py).
    """

    format: str
    tool: str
    tool_version: str | None
    findings: tuple[NormalizedFinding, ...]
    sanitized: int = 0


class Draft(msgspec.Struct, array_like=True):
    """A finding before de-duplication and fingerprinting, which need the whole report.

    A msgspec Struct (encoded as a plain array) so that streaming can spill drafts compactly.
    """

    tool: str
    rule_id: str
    title: str
    severity: str
    kind: str
    message: str
    key: str
    confidence: str | None = None
    path: str | None = None
    line: int | None = None
    end_line: int | None = None
    package: str | None = None
    package_name: str | None = None
    installed_version: str | None = None
    fixed_version: str | None = None
    cwe: tuple[str, ...] = ()
    cve: tuple[str, ...] = ()
    vuln_id: str | None = None

    def __post_init__(self) -> None:
        """Share one copy of the texts that repeat across a big report's findings."""
        self.rule_id = sys.intern(self.rule_id)
        self.title = sys.intern(self.title)
        self.message = sys.intern(self.message)
        self.key = sys.intern(self.key)
        self.path = sys.intern(self.path) if self.path is not None else None
        self.confidence = sys.intern(self.confidence) if self.confidence is not None else None

    def finish(self, fingerprint: str) -> NormalizedFinding:
        """Freeze this draft into a NormalizedFinding carrying its final fingerprint."""
        return NormalizedFinding(
            tool=self.tool,
            rule_id=self.rule_id,
            title=self.title,
            severity=self.severity,
            confidence=self.confidence,
            kind=self.kind,
            path=self.path,
            line=self.line,
            end_line=self.end_line,
            package=self.package,
            installed_version=self.installed_version,
            fixed_version=self.fixed_version,
            cwe=self.cwe,
            cve=self.cve,
            message=self.message,
            fingerprint=fingerprint,
        )


@dataclass(slots=True)
class RawReport:
    """What a format module hands back: the producing tool and its findings as drafts.

    `drafts` may be a one-shot iterator; it is consumed exactly once, and only after the format
    module returned, so it may still raise ReportError for a bad report. A format can thus
    convert its items while the JSON stream is still being read, handing each draft on at once
    (stream_report spills it) instead of collecting them all first. `tool_version` is read only
    once `drafts` is exhausted: see then_version for values that only the whole report tells.
    """

    tool: str
    tool_version: str | None
    drafts: Iterable[Draft] = field(default_factory=tuple)

    def then_version(self, drafts: Iterable[Draft], version: Callable[[], str | None]) -> RawReport:
        """Stream `drafts`, then set tool_version to `version()` once they are all consumed.

        For versions that may sit anywhere in the document (often after the findings).
        """

        def streamed() -> Iterator[Draft]:
            yield from drafts
            self.tool_version = version()

        self.drafts = streamed()
        return self


@dataclass(frozen=True, slots=True)
class ScannerFormat:
    """One registered report format: how to recognise its head and how to parse it."""

    name: str
    sniff: Callable[[HeadInfo], bool]
    parse: Callable[[Source], RawReport]
