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


EVENT_TYPES: dict[str, type[Payload]] = {
    event_type("org", "created"): OrgCreated,
    event_type("project", "created"): ProjectCreated,
    event_type("finding", "recorded"): FindingRecorded,
    event_type("finding", "recorded", 2): FindingRecordedV2,
    event_type("finding", "seen_again"): FindingSeen,
    event_type("finding", "reopened"): FindingSeen,
    event_type("finding", "fixed"): FindingFixed,
    event_type("finding", "triaged"): FindingTriaged,
    event_type("api_key", "issued"): ApiKeyIssued,
    event_type("api_key", "revoked"): ApiKeyRevoked,
    event_type("api_key", "used"): ApiKeyUsed,
    event_type("scan_report", "submitted"): ScanReportSubmitted,
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
}


#: Types no longer published (their events are upcast on load) but kept for stored messages.
HISTORICAL = frozenset({event_type("finding", "recorded", 1)})


def register(types: dict[str, type[Payload]]) -> None:
    """Add the payload contracts of another capability's events."""
    EVENT_TYPES.update(types)


def payload_of(type_: str, data: dict[str, Any]) -> Payload:
    """Validate an envelope's data against its contract (raises msgspec.ValidationError)."""
    import msgspec

    return msgspec.convert(data, type=EVENT_TYPES[type_], strict=False)
