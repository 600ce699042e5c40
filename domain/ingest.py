"""Pure planning of a scan's effects on findings: new, seen again, reopened, fixed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.finding import Finding, finding_id
from domain.project import Project
from domain.scanners import ReportStream
from domain.scanners.model import NormalizedFinding, ParsedReport
from domain.sla import sla_days_for, sla_due

#: A whole report in memory, or one streamed from its spill file in chunks (bounded memory).
Report = ParsedReport | ReportStream


def finding_count(report: Report) -> int:
    return report.count if isinstance(report, ReportStream) else len(report.findings)


def finding_chunks(report: Report, size: int) -> Iterator[ParsedReport]:
    """The report's findings as in-memory reports of at most `size` findings each."""
    if isinstance(report, ReportStream):
        for chunk in report.chunks(size):
            yield ParsedReport(report.format, report.tool, report.tool_version, chunk)
        return
    for start in range(0, len(report.findings), size):
        yield replace(report, findings=report.findings[start : start + size])


MAX_TARGET_LEN = 500


@dataclass(frozen=True, slots=True)
class ScanMeta:
    """Where a report came from: its digest and size, and the scope it covers."""

    digest: str
    size: int
    target: str = "default"
    branch: str = "main"
    full: bool = True
    commit: str | None = None


@dataclass
class IngestPlan:
    changed: list[Finding]
    seen_ids: set[str]
    counts: dict[str, int] = field(default_factory=dict)


def details_of(nf: NormalizedFinding) -> dict[str, Any]:
    return {
        "path": nf.path,
        "line": nf.line,
        "end_line": nf.end_line,
        "message": nf.message,
        "cwe": list(nf.cwe),
        "cve": list(nf.cve),
        "kind": nf.kind,
        "confidence": nf.confidence,
        "package": nf.package,
        "installed_version": nf.installed_version,
        "fixed_version": nf.fixed_version,
    }


def plan_ingest(
    *,
    project: Project,
    report: ParsedReport,
    scan_id: str,
    now: datetime,
    existing: dict[UUID, Finding],
    actor: str,
) -> IngestPlan:
    """New findings are recorded, known ones observed (a fixed one comes back reopened)."""
    counts = {"new": 0, "seen_again": 0, "reopened": 0, "fixed": 0, "total": 0}
    changed: list[Finding] = []
    seen: set[str] = set()
    seen_at = now.isoformat()
    for nf in report.findings:
        fid = finding_id(project.id, nf.fingerprint)
        if str(fid) in seen:
            continue
        seen.add(str(fid))
        current = existing.get(fid)
        if current is not None and current.last_scan_id == scan_id:
            # applied by an earlier, interrupted attempt at this same scan: not again
            counts["new" if current.scan_count == 1 else "seen_again"] += 1
            continue
        if current is None:
            counts["new"] += 1
            changed.append(
                Finding(
                    org=project.org,
                    project_id=str(project.id),
                    fingerprint=nf.fingerprint,
                    tool=nf.tool,
                    rule_id=nf.rule_id,
                    title=nf.title,
                    severity=nf.severity,
                    details=details_of(nf),
                    scan_id=scan_id,
                    seen_at=seen_at,
                    sla_due=sla_due(nf.severity, now),
                    sla_days=sla_days_for(nf.severity),
                    actor=actor,
                )
            )
            continue
        counts["reopened" if current.status == "fixed" else "seen_again"] += 1
        current.observe(nf.tool, scan_id, seen_at, actor)
        changed.append(current)
    counts["total"] = len(seen)
    return IngestPlan(changed, seen, counts)


def fix_missing(
    candidates: Iterable[Finding], scan_id: str, now: datetime, actor: str
) -> list[Finding]:
    """Open findings a full scan of their scope no longer reports become fixed."""
    fixed = []
    for finding in candidates:
        if finding.is_open:
            finding.fix(scan_id=scan_id, fixed_at=now.isoformat(), actor=actor)
            fixed.append(finding)
    return fixed
