"""Command bodies of the governance capability: profiles, policies, versions, test results,
promotions, approvals and exceptions (HTTP and NATS share them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, field

from contracts.commands import Command, Commit, Environment, Ident
from contracts.policy import Profile
from contracts.text import LINE, PROSE

Reason = Annotated[str, PROSE, Meta(min_length=1, max_length=2000)]
OptionalReason = Annotated[str, PROSE, Meta(max_length=2000)]
VersionLabel = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}(?![\s\S])")]
ArtifactDigest = Annotated[str, Meta(pattern=r"^[a-z0-9]+:[0-9a-f]{32,128}(?![\s\S])")]
Actor = Annotated[str, LINE, Meta(min_length=1, max_length=200)]
Count = Annotated[int, Meta(ge=0, le=10_000_000)]
Uuid = Annotated[str, Meta(pattern=r"^[0-9a-fA-F-]{32,36}(?![\s\S])")]


class SetProfile(Profile, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Describe the project (criticality, data classification, exposure, owner team)."""


class SetPolicy(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A new version of an environment's gate policy: the whole document and why."""

    policy: dict[str, Any]
    reason: Reason


class RegisterVersion(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A build that may be promoted: its label, commit, artifact digest, and who wrote it."""

    project_id: Ident | None = None
    version: VersionLabel
    commit: Commit
    artifact_digest: ArtifactDigest | None = None
    #: The author of the change (never allowed to approve its promotion).
    author: Actor | None = None


class SubmitTestResults(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    project_id: Ident | None = None
    commit: Commit
    suite: Annotated[str, LINE, Meta(min_length=1, max_length=100)] = "default"
    passed: Count
    failed: Count = 0
    skipped: Count = 0
    #: Line coverage as a ratio (0.83) when the suite measured it.
    coverage: Annotated[float, Meta(ge=0, le=1)] | None = None


class RequestPromotion(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Promote a registered version into `to` (from the environment before it)."""

    project_id: Ident | None = None
    version: VersionLabel
    to: Environment
    #: Optional; when given it must be the environment right before `to`.
    from_: Environment | None = field(name="from", default=None)
    reason: OptionalReason = ""


class ClosePromotion(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    reason: Reason


class Rollback(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    reason: Reason


class DecideApproval(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    #: The approval request (needed on the bus; over HTTP the path names it).
    request_id: Uuid | None = None
    decision: Literal["approve", "reject"]
    reason: OptionalReason = ""


class CommentApproval(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    #: The approval request (needed on the bus; over HTTP the path names it).
    request_id: Uuid | None = None
    text: Annotated[str, PROSE, Meta(min_length=1, max_length=5000)]


class RequestException(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Accept a risk: findings by id, a rule or a CWE, in one environment (or all)."""

    project_id: Ident | None = None
    environment: Environment | None = None
    finding_ids: Annotated[list[Uuid], Meta(max_length=1000)] = []
    rule_id: Annotated[str, LINE, Meta(min_length=1, max_length=500)] | None = None
    cwe: Annotated[str, Meta(pattern=r"^CWE-[0-9]{1,6}(?![\s\S])")] | None = None
    justification: Annotated[str, PROSE, Meta(min_length=10, max_length=10_000)]
    compensating_controls: Annotated[
        list[Annotated[str, PROSE, Meta(min_length=1, max_length=1000)]], Meta(max_length=50)
    ] = []
    expires_at: datetime


class DecideException(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    #: The exception (needed on the bus; over HTTP the path names it).
    exception_id: Uuid | None = None
    decision: Literal["approve", "reject"]
    reason: OptionalReason = ""


class RevokeException(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    reason: Reason
