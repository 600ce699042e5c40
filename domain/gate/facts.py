"""Gate facts from aggregates (the event store's view), for replaying a decision.

The live path builds the same facts from read-model rows (projections/gate_snapshot.py,
services/gate.py) through the constructors here, so that a value is spelled one way whatever
its source; only open findings, 10,000s of them, are spelled by SQL as `finding_fact` spells
them (`gate_snapshot.FINDING_FACT`), and read through `finding_fact` when SQL cannot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from contracts.policy import Profile
from domain.approval import ApprovalRequest
from domain.environment import DeployEnvironment
from domain.finding import OPEN_STATUSES, Finding
from domain.gate.inputs import (
    ApprovalDecisionFact,
    ApprovalFact,
    ExceptionFact,
    FindingFact,
    PreviousEnvironment,
    ScanFact,
    TestFact,
    utc_iso,
)
from domain.risk_exception import RiskException
from domain.scan_report import ScanReport
from domain.test_run import TestRun


def finding_fact(
    id: str,
    severity: str,
    status: str,
    tool: str,
    sources: Iterable[str],
    rule_id: str,
    cwe: Iterable[str] | None,
    path: str | None,
    sla_due: str | datetime | None,
) -> FindingFact:
    return FindingFact(
        str(id),
        severity,
        status,
        tool,
        tuple(sources),
        rule_id,
        tuple(str(c) for c in cwe or ()),
        path,
        utc_iso(sla_due),
    )


def exception_fact(
    id: str,
    environment: str | None,
    finding_ids: Iterable[str],
    rule_id: str | None,
    cwe: str | None,
    expires_at: str | datetime,
    approved_by: str,
) -> ExceptionFact:
    return ExceptionFact(
        id=str(id),
        environment=environment,
        finding_ids=tuple(sorted(str(i) for i in finding_ids)),
        rule_id=rule_id,
        cwe=cwe,
        expires_at=utc_iso(expires_at) or "",
        approved_by=approved_by,
    )


def scan_fact(
    id: str,
    tool: str,
    format: str,
    full: bool,
    commit: str | None,
    submitted_at: str | datetime,
) -> ScanFact:
    return ScanFact(
        id=str(id),
        tool=tool,
        format=format,
        full=bool(full),
        commit=commit,
        submitted_at=utc_iso(submitted_at) or "",
    )


def test_fact(
    id: str,
    suite: str,
    passed: int,
    failed: int,
    skipped: int,
    coverage: float | None,
    submitted_at: str | datetime,
) -> TestFact:
    return TestFact(
        id=str(id),
        suite=suite,
        passed=int(passed),
        failed=int(failed),
        skipped=int(skipped),
        coverage=None if coverage is None else float(coverage),
        submitted_at=utc_iso(submitted_at) or "",
    )


def approval_fact(
    id: str,
    status: str,
    version_digest: str,
    requested_by: str,
    expires_at: str | datetime,
    decisions: Sequence[dict[str, Any]],
) -> ApprovalFact:
    return ApprovalFact(
        id=str(id),
        status=status,
        version_digest=version_digest,
        requested_by=requested_by,
        expires_at=utc_iso(expires_at) or "",
        decisions=tuple(
            ApprovalDecisionFact(
                actor=d["actor"],
                roles=tuple(sorted(d["roles"])),
                decision=d["decision"],
                at=utc_iso(d["at"]) or "",
            )
            for d in decisions
        ),
    )


def previous_environment(
    name: str, live_since: str | datetime | None, failed: bool
) -> PreviousEnvironment:
    return PreviousEnvironment(name=name, live_since=utc_iso(live_since), failed=failed)


def profile_of(data: dict[str, Any] | None) -> Profile:
    return msgspec.convert(data or {}, Profile)


# --- from aggregates ----------------------------------------------------------------------------


def open_finding_facts(findings: Iterable[Finding]) -> list[FindingFact]:
    return [
        finding_fact(
            str(f.id),
            f.severity,
            f.status,
            f.tool,
            f.sources,
            f.rule_id,
            f.details.get("cwe"),
            f.details.get("path"),
            f.sla_due,
        )
        for f in findings
        if f.status in OPEN_STATUSES
    ]


def active_exception_facts(
    exceptions: Iterable[RiskException], environment: str, now: datetime
) -> list[ExceptionFact]:
    """Approved, unexpired exceptions of this environment (or all environments)."""
    return [
        exception_fact(
            str(e.id),
            e.environment,
            e.finding_ids,
            e.rule_id,
            e.cwe,
            e.expires_at,
            e.approved_by or "",
        )
        for e in exceptions
        if e.status == "active" and not e.expired_at(now) and e.environment in (None, environment)
    ]


def scan_facts(scans: Iterable[ScanReport], commit: str) -> list[ScanFact]:
    return [
        scan_fact(str(s.id), s.tool, s.format, s.full, s.commit, s.submitted_at)
        for s in scans
        if s.commit == commit
    ]


def test_facts(runs: Iterable[TestRun], commit: str) -> list[TestFact]:
    return [
        test_fact(str(t.id), t.suite, t.passed, t.failed, t.skipped, t.coverage, t.submitted_at)
        for t in runs
        if t.commit == commit
    ]


def approval_facts(requests: Iterable[ApprovalRequest]) -> list[ApprovalFact]:
    return [
        approval_fact(
            str(r.id), r.status, r.version_digest, r.requested_by, r.expires_at, r.decisions
        )
        for r in requests
    ]


def previous_of(
    environment: DeployEnvironment | None, name: str, digest: str
) -> PreviousEnvironment:
    if environment is None:
        return previous_environment(name, None, False)
    return previous_environment(name, environment.live_since(digest), digest in environment.failed)
