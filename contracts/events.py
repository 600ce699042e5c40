"""Versioned event payloads (the `data` of an EventEnvelope), one struct per event type.

The wire type of each is `pearl.<aggregate>.<event>.v<N>`; `EVENT_TYPES` maps it to its struct.
Credential material (API key salt and digest) never appears here: it never leaves the store.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from contracts.envelope import event_type


class Payload(Struct, frozen=True, kw_only=True):
    """Base of event payloads; unknown fields are tolerated (consumers upgrade independently)."""


class OrgCreated(Payload, frozen=True, kw_only=True):
    name: str


class ProjectCreated(Payload, frozen=True, kw_only=True):
    slug: str
    name: str
    environments: list[str]


class FindingDetails(Payload, frozen=True, kw_only=True):
    path: str | None = None
    line: int | None = None
    end_line: int | None = None
    message: str = ""
    cwe: list[str] = []
    cve: list[str] = []
    kind: str | None = None
    confidence: str | None = None
    package: str | None = None
    installed_version: str | None = None
    fixed_version: str | None = None


class FindingRecorded(Payload, frozen=True, kw_only=True):
    project_id: str
    fingerprint: str
    tool: str
    rule_id: str
    title: str
    severity: str
    details: FindingDetails
    scan_id: str | None
    seen_at: str
    sla_due: str | None


class FindingRecordedV2(FindingRecorded, frozen=True, kw_only=True):
    """v2: the SLA days the due date was computed with (v1 events are upcast on load)."""

    sla_days: int | None


class FindingSeen(Payload, frozen=True, kw_only=True):
    tool: str
    scan_id: str
    seen_at: str


class FindingFixed(Payload, frozen=True, kw_only=True):
    scan_id: str
    fixed_at: str


class FindingTriaged(Payload, frozen=True, kw_only=True):
    status: str
    justification: str


class FindingSlaBreached(Payload, frozen=True, kw_only=True):
    at: str


class ApiKeyIssued(Payload, frozen=True, kw_only=True):
    key_id: str
    name: str
    roles: list[str]
    expires_at: str | None


class ApiKeyRevoked(Payload, frozen=True, kw_only=True):
    reason: str


class ApiKeyUsed(Payload, frozen=True, kw_only=True):
    at: str


class ScanReportSubmitted(Payload, frozen=True, kw_only=True):
    project_id: str
    tool: str
    tool_version: str | None
    format: str
    target: str
    branch: str
    full: bool
    digest: str
    size: int
    counts: dict[str, int]
    submitted_at: str


class ScanReportSubmittedV2(ScanReportSubmitted, frozen=True, kw_only=True):
    """v2: the commit the report scanned (None when not given)."""

    commit: str | None


class ScanScopeOpened(Payload, frozen=True, kw_only=True):
    project_id: str
    tool: str
    target: str
    branch: str


class ScanScopeMembershipChanged(Payload, frozen=True, kw_only=True):
    scan_id: str
    added: list[str]
    removed: list[str]


class AccessDenialRecorded(Payload, frozen=True, kw_only=True):
    action: str
    resource: str
    reason: str
    code: str
    channel: str
    at: str


class ScanTargetDefined(Payload, frozen=True, kw_only=True):
    kind: str
    location: str
    scanners: list[str]
    schedule: str | None
    rules: str | None
    branch: str
    timeout_seconds: int


class ScanTargetRegistered(ScanTargetDefined, frozen=True, kw_only=True):
    project_id: str
    name: str


class ScanTargetRemoved(Payload, frozen=True, kw_only=True):
    reason: str


class ScanJobRequested(Payload, frozen=True, kw_only=True):
    project_id: str
    target_id: str
    target_name: str
    scanner: str
    kind: str
    location: str
    rules: str | None
    branch: str
    timeout_seconds: int
    trigger: str
    slot: str | None
    requested_at: str


class ScanJobStarted(Payload, frozen=True, kw_only=True):
    attempt: int
    started_at: str


class ScanJobSucceeded(Payload, frozen=True, kw_only=True):
    attempt: int
    scan_id: str
    counts: dict[str, int]
    tool_version: str | None
    digest: str | None
    finished_at: str


class ScanJobFailed(Payload, frozen=True, kw_only=True):
    attempt: int
    reason: str
    finished_at: str
    will_retry: bool
    retry_at: str | None


class ScanJobCancelled(Payload, frozen=True, kw_only=True):
    reason: str
    cancelled_at: str


class AuditCheckpointSigned(Payload, frozen=True, kw_only=True):
    seq: int
    position: int
    hash: str
    public_key: str
    signature: str
    signed_at: str


# --- governance: profiles, policies, versions, test results, promotions, approvals, exceptions


class ProjectProfile(Payload, frozen=True, kw_only=True):
    """What a project is, for policies to refer to (see the policy document's `when`)."""

    criticality: str
    data_classification: str
    internet_facing: bool
    owner_team: str | None


class ProjectProfileSet(Payload, frozen=True, kw_only=True):
    profile: ProjectProfile


class GatePolicyCreated(Payload, frozen=True, kw_only=True):
    """A policy history opened: an org baseline (`project_id` None) or a project's own."""

    project_id: str | None
    environment: str


class GatePolicyRevised(Payload, frozen=True, kw_only=True):
    """Version `version` of the policy: the whole document (docs/schemas/policy.schema.json)."""

    version: int
    document: dict[str, Any]
    digest: str
    reason: str
    at: str


class ReleaseVersionRegistered(Payload, frozen=True, kw_only=True):
    project_id: str
    release: str
    commit: str
    artifact_digest: str | None
    digest: str
    author: str | None
    registered_at: str


class TestRunSubmitted(Payload, frozen=True, kw_only=True):
    __test__ = False  # not a pytest class

    project_id: str
    commit: str
    suite: str
    passed: int
    failed: int
    skipped: int
    coverage: float | None
    submitted_at: str


class PromotionRequested(Payload, frozen=True, kw_only=True):
    project_id: str
    release: str
    commit: str
    version_digest: str
    from_environment: str | None
    to_environment: str
    author: str | None
    reason: str
    requested_at: str


class GateRuleOutcome(Payload, frozen=True, kw_only=True):
    """One rule's verdict in a gate decision, with what it observed and looked at."""

    rule_id: str
    kind: str
    source: str
    status: str
    observed: Any = None
    threshold: Any = None
    message: str = ""
    hint: str = ""
    finding_ids: list[str] = []
    finding_count: int = 0
    exception_ids: list[str] = []
    approval_ids: list[str] = []
    scan_ids: list[str] = []
    test_ids: list[str] = []


class PolicyVersionRef(Payload, frozen=True, kw_only=True):
    version: int
    digest: str


class GatePolicyVersions(Payload, frozen=True, kw_only=True):
    """The policy versions a decision was made with (None: no such policy in force)."""

    baseline: PolicyVersionRef | None = None
    project: PolicyVersionRef | None = None


class PromotionGateEvaluated(Payload, frozen=True, kw_only=True):
    """A gate evaluation of the promotion, on inputs read at store position `as_of_position`."""

    decision_id: str
    result: str
    rules: list[GateRuleOutcome]
    inputs_digest: str
    evaluated_at: str
    as_of_position: int
    policy: GatePolicyVersions
    trigger: str
    trigger_position: int


class PromotionApprovalRequested(Payload, frozen=True, kw_only=True):
    request_id: str


class EnvironmentOpened(Payload, frozen=True, kw_only=True):
    project_id: str
    name: str


class EnvironmentPromotionOpened(Payload, frozen=True, kw_only=True):
    promotion_id: str


class EnvironmentPromotionClosed(Payload, frozen=True, kw_only=True):
    promotion_id: str
    outcome: str


class EnvironmentPromoted(Payload, frozen=True, kw_only=True):
    promotion_id: str
    release: str
    digest: str
    commit: str
    at: str


class EnvironmentRolledBack(Payload, frozen=True, kw_only=True):
    from_release: str
    from_digest: str
    to_release: str
    to_digest: str
    to_commit: str
    reason: str
    at: str


class ApprovalRequested(Payload, frozen=True, kw_only=True):
    project_id: str
    promotion_id: str
    number: int
    environment: str
    release: str
    version_digest: str
    required_count: int
    roles: list[str]
    requested_by: str
    author: str | None
    requested_at: str
    expires_at: str


class ApprovalDecided(Payload, frozen=True, kw_only=True):
    decision: str
    reason: str
    roles: list[str]
    at: str


class ApprovalCommented(Payload, frozen=True, kw_only=True):
    text: str
    at: str


class At(Payload, frozen=True, kw_only=True):
    """An event that only says when (expiries, approvals of an exception)."""

    at: str


class ReasonAt(Payload, frozen=True, kw_only=True):
    """An event that says why and when (voided, rejected, revoked)."""

    reason: str
    at: str


class RiskExceptionRequested(Payload, frozen=True, kw_only=True):
    project_id: str
    environment: str | None
    finding_ids: list[str]
    rule_id: str | None
    cwe: str | None
    justification: str
    compensating_controls: list[str]
    requested_at: str
    expires_at: str


class ApiKeyAgentBound(Payload, frozen=True, kw_only=True):
    agent: str


class AgentRegistered(Payload, frozen=True, kw_only=True):
    slug: str
    name: str
    owner: str
    capabilities: list[str]
    autonomy: dict[str, str]
    registered_at: str


class AgentAutonomySet(Payload, frozen=True, kw_only=True):
    environment: str
    level: str
    reason: str


class AgentPaused(Payload, frozen=True, kw_only=True):
    reason: str
    #: Task packets whose leases were released with the pause.
    released: list[str]


class AgentResumed(Payload, frozen=True, kw_only=True):
    reason: str


class TaskTarget(Payload, frozen=True, kw_only=True):
    id: str
    fingerprint: str
    tool: str
    rule_id: str
    title: str
    severity: str
    path: str | None
    line: int | None
    package: str | None
    installed_version: str | None
    fixed_version: str | None
    cwe: list[str]
    cve: list[str]
    message: str
    kind: str | None
    sla_due: str | None


class TaskGuardRails(Payload, frozen=True, kw_only=True):
    allowed_paths: list[str]
    max_changed_lines: int
    forbidden_operations: list[str]


class TaskPacketCreated(Payload, frozen=True, kw_only=True):
    project_id: str
    key: str
    title: str
    targets: list[TaskTarget]
    spec: dict[str, Any]
    guard_rails: TaskGuardRails
    priority: str
    due: str | None
    created_at: str


class TaskPacketClaimed(Payload, frozen=True, kw_only=True):
    holder: str
    at: str
    lease_expires_at: str


class TaskPacketLeaseRenewed(Payload, frozen=True, kw_only=True):
    lease_expires_at: str
    at: str


class TaskPacketReleased(Payload, frozen=True, kw_only=True):
    #: abandoned | failed | revoked (the holder was paused)
    outcome: str
    reason: str
    at: str


class TaskPacketLeaseExpired(Payload, frozen=True, kw_only=True):
    holder: str | None
    at: str


class TaskPacketCompleted(Payload, frozen=True, kw_only=True):
    #: branch, commit, pr_url, summary, changed_files, changed_lines
    outcome: dict[str, Any]
    at: str


class TaskPacketVerified(Payload, frozen=True, kw_only=True):
    scan_id: str
    at: str


class TaskPacketReopened(Payload, frozen=True, kw_only=True):
    scan_id: str
    remaining: list[str]
    at: str


EVENT_TYPES: dict[str, type[Payload]] = {
    event_type("org", "created"): OrgCreated,
    event_type("project", "created"): ProjectCreated,
    event_type("finding", "recorded"): FindingRecorded,
    event_type("finding", "recorded", 2): FindingRecordedV2,
    event_type("finding", "seen_again"): FindingSeen,
    event_type("finding", "reopened"): FindingSeen,
    event_type("finding", "fixed"): FindingFixed,
    event_type("finding", "triaged"): FindingTriaged,
    event_type("finding", "sla_breached"): FindingSlaBreached,
    event_type("api_key", "issued"): ApiKeyIssued,
    event_type("api_key", "revoked"): ApiKeyRevoked,
    event_type("api_key", "used"): ApiKeyUsed,
    event_type("scan_report", "submitted"): ScanReportSubmitted,
    event_type("scan_report", "submitted", 2): ScanReportSubmittedV2,
    event_type("scan_scope", "opened"): ScanScopeOpened,
    event_type("scan_scope", "membership_changed"): ScanScopeMembershipChanged,
    event_type("access_denial", "recorded"): AccessDenialRecorded,
    event_type("audit_checkpoint", "signed"): AuditCheckpointSigned,
    event_type("scan_target", "registered"): ScanTargetRegistered,
    event_type("scan_target", "updated"): ScanTargetDefined,
    event_type("scan_target", "reregistered"): ScanTargetDefined,
    event_type("scan_target", "removed"): ScanTargetRemoved,
    event_type("scan_job", "requested"): ScanJobRequested,
    event_type("scan_job", "started"): ScanJobStarted,
    event_type("scan_job", "retried"): ScanJobStarted,
    event_type("scan_job", "succeeded"): ScanJobSucceeded,
    event_type("scan_job", "failed"): ScanJobFailed,
    event_type("scan_job", "cancelled"): ScanJobCancelled,
    event_type("project", "profile_set"): ProjectProfileSet,
    event_type("gate_policy", "created"): GatePolicyCreated,
    event_type("gate_policy", "revised"): GatePolicyRevised,
    event_type("release_version", "registered"): ReleaseVersionRegistered,
    event_type("test_run", "submitted"): TestRunSubmitted,
    event_type("promotion", "requested"): PromotionRequested,
    event_type("promotion", "gate_evaluated"): PromotionGateEvaluated,
    event_type("promotion", "approval_requested"): PromotionApprovalRequested,
    event_type("promotion", "promoted"): At,
    event_type("promotion", "rejected"): ReasonAt,
    event_type("deploy_environment", "opened"): EnvironmentOpened,
    event_type("deploy_environment", "promotion_opened"): EnvironmentPromotionOpened,
    event_type("deploy_environment", "promotion_closed"): EnvironmentPromotionClosed,
    event_type("deploy_environment", "promoted"): EnvironmentPromoted,
    event_type("deploy_environment", "rolled_back"): EnvironmentRolledBack,
    event_type("approval_request", "requested"): ApprovalRequested,
    event_type("approval_request", "decided"): ApprovalDecided,
    event_type("approval_request", "commented"): ApprovalCommented,
    event_type("approval_request", "expired"): At,
    event_type("approval_request", "voided"): ReasonAt,
    event_type("risk_exception", "requested"): RiskExceptionRequested,
    event_type("risk_exception", "approved"): At,
    event_type("risk_exception", "rejected"): ReasonAt,
    event_type("risk_exception", "revoked"): ReasonAt,
    event_type("risk_exception", "expired"): At,
    event_type("api_key", "agent_bound"): ApiKeyAgentBound,
    event_type("agent", "registered"): AgentRegistered,
    event_type("agent", "autonomy_set"): AgentAutonomySet,
    event_type("agent", "paused"): AgentPaused,
    event_type("agent", "resumed"): AgentResumed,
    event_type("task_packet", "created"): TaskPacketCreated,
    event_type("task_packet", "claimed"): TaskPacketClaimed,
    event_type("task_packet", "lease_renewed"): TaskPacketLeaseRenewed,
    event_type("task_packet", "released"): TaskPacketReleased,
    event_type("task_packet", "lease_expired"): TaskPacketLeaseExpired,
    event_type("task_packet", "completed"): TaskPacketCompleted,
    event_type("task_packet", "verified"): TaskPacketVerified,
    event_type("task_packet", "reopened"): TaskPacketReopened,
}


#: Types no longer published (their events are upcast on load) but kept for stored messages.
HISTORICAL = frozenset(
    {event_type("finding", "recorded", 1), event_type("scan_report", "submitted", 1)}
)


def register(types: dict[str, type[Payload]]) -> None:
    """Add the payload contracts of another capability's events."""
    EVENT_TYPES.update(types)


def payload_of(type_: str, data: dict[str, Any]) -> Payload:
    """Validate an envelope's data against its contract (raises msgspec.ValidationError)."""
    import msgspec

    return msgspec.convert(data, type=EVENT_TYPES[type_], strict=False)
