"""What a gate evaluation looks at, and what it decides: plain, canonical, digestible values.

The inputs are gathered either from a consistent snapshot of the read models at a store
position (live) or by replaying the event store up to that position (`pearl replay decision`);
both give the same `GateInputs`, so the same `inputs_digest`. Every list is sorted by id and
every time is a UTC ISO 8601 string, so the canonical encoding is unique.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, Literal

import msgspec
from msgspec import Struct

from contracts.policy import Profile

Result = Literal["passed", "failed", "awaiting_approval"]
RuleStatus = Literal["passed", "failed", "not_applicable"]


def utc_iso(value: str | datetime | None) -> str | None:
    """One spelling for a time: UTC, ISO 8601, microseconds only when present."""
    if value is None:
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat()


def utc_time(value: str) -> datetime:
    """A fact's time as an aware UTC datetime (naive times are UTC)."""
    when = datetime.fromisoformat(value)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# The facts and inputs hold only strings, numbers and tuples of them (or of other facts): they
# cannot be part of a reference cycle, so the garbage collector does not track them (10,000s
# per evaluation).


class FindingFact(Struct, frozen=True, array_like=True, gc=False):
    """An open finding; its JSON form is an array in field order."""

    id: str
    severity: str
    status: str
    tool: str
    sources: tuple[str, ...]
    rule_id: str
    cwe: tuple[str, ...]
    path: str | None
    sla_due: str | None


class ExceptionFact(Struct, frozen=True, kw_only=True, gc=False):
    """An approved, unexpired risk acceptance of the project (for this environment or all)."""

    id: str
    environment: str | None
    finding_ids: tuple[str, ...] = ()
    rule_id: str | None = None
    cwe: str | None = None
    expires_at: str
    approved_by: str


class ScanFact(Struct, frozen=True, kw_only=True, gc=False):
    id: str
    tool: str
    format: str
    full: bool
    commit: str | None
    submitted_at: str


class TestFact(Struct, frozen=True, kw_only=True, gc=False):
    id: str
    suite: str
    passed: int
    failed: int
    skipped: int
    coverage: float | None
    submitted_at: str


class ApprovalDecisionFact(Struct, frozen=True, kw_only=True, gc=False):
    actor: str
    roles: tuple[str, ...]
    decision: Literal["approve", "reject"]
    at: str


class ApprovalFact(Struct, frozen=True, kw_only=True, gc=False):
    """An approval request of this promotion, bound to one version digest."""

    id: str
    status: str  # pending | approved | rejected | expired | voided
    version_digest: str
    requested_by: str
    expires_at: str
    decisions: tuple[ApprovalDecisionFact, ...] = ()


class PreviousEnvironment(Struct, frozen=True, kw_only=True, gc=False):
    """The promoted version's history in the environment it comes from (for soak time)."""

    name: str
    live_since: str | None  # when this version became current there (None: it is not live)
    failed: bool  # a release of this version there failed or was rolled back


class GateInputs(Struct, frozen=True, kw_only=True, gc=False):
    project_id: str
    environment: str
    from_environment: str | None
    version: str
    commit: str
    version_digest: str
    requested_by: str
    author: str | None
    profile: Profile
    now: str
    findings: tuple[FindingFact, ...] = ()
    exceptions: tuple[ExceptionFact, ...] = ()
    scans: tuple[ScanFact, ...] = ()
    tests: tuple[TestFact, ...] = ()
    approvals: tuple[ApprovalFact, ...] = ()
    previous: PreviousEnvironment | None = None

    def canonical(self) -> GateInputs:
        """The same inputs with every collection sorted by id (the digest's form)."""
        return msgspec.structs.replace(
            self,
            findings=tuple(sorted(self.findings, key=_id)),
            exceptions=tuple(sorted(self.exceptions, key=_id)),
            scans=tuple(sorted(self.scans, key=_id)),
            tests=tuple(sorted(self.tests, key=_id)),
            approvals=tuple(sorted(self.approvals, key=_id)),
        )

    def digest(self) -> str:
        """SHA-256 of the canonical JSON encoding: equal inputs, equal digest."""
        return canonical_digest(self.canonical())


def canonical_digest(canonical: GateInputs) -> str:
    """`digest()` of inputs that are canonical already (no second sort)."""
    return "sha256:" + hashlib.sha256(_ENCODER.encode(canonical)).hexdigest()


_ENCODER = msgspec.json.Encoder()
#: Every fact's id is a str (the fact constructors spell it), so this is the sort key.
_id = attrgetter("id")


class RuleResult(Struct, frozen=True, kw_only=True):
    """One rule's verdict, with what it observed, the threshold, and what it looked at."""

    rule_id: str
    kind: str
    source: Literal["baseline", "project"]
    status: RuleStatus
    observed: Any = None
    threshold: Any = None
    message: str = ""
    #: What would make the rule pass (empty when it passed or is not applicable).
    hint: str = ""
    finding_ids: list[str] = []
    finding_count: int = 0
    exception_ids: list[str] = []
    approval_ids: list[str] = []
    scan_ids: list[str] = []
    test_ids: list[str] = []


class Decision(Struct, frozen=True, kw_only=True):
    result: Result
    rules: list[RuleResult]
    inputs_digest: str
    evaluated_at: str
