"""A governance story that stores every kind of governance event (for contract and projection
tests): a profile, policy versions, versions, test results, promotions with their gate, approvals
(decided, commented, expired, voided), releases and a rollback, and exceptions in every state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from contracts.commands import IssueApiKey, RecordFinding
from contracts.governance import (
    CommentApproval,
    DecideApproval,
    DecideException,
    RegisterVersion,
    RequestException,
    RequestPromotion,
    SetPolicy,
    SetProfile,
    SubmitTestResults,
)
from domain.approval import ApprovalRequest
from domain.authz import Principal
from domain.gate.facts import approval_facts
from domain.governance_app import build_inputs
from domain.pearl_app import PearlApp

COMMIT_1 = "a" * 40
COMMIT_2 = "b" * 40


class SteppingClock:
    """The real time, moved ahead as far as the story advanced it (expiries come sooner)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@dataclass
class Story:
    """The ids the governance story created."""

    project: str
    promotions: list[str] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    exceptions: dict[str, str] = field(default_factory=dict)
    versions: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    policy: str = ""


def _principal(app: PearlApp, admin: Principal, org: str, *roles: Any) -> Principal:
    key = app.issue_api_key(admin, org, IssueApiKey(name="-".join(roles), roles=list(roles)))
    return app.authenticate(key.secret["token"])


def _gate(app: PearlApp, promotion_id: str, approvals: list[str]) -> str:
    """Record a gate evaluation on minimal inputs (only the approval requests given)."""
    promotion = app.promotion_for_gate(UUID(promotion_id))
    requests: list[ApprovalRequest] = [app.repository.get(UUID(i)) for i in approvals]
    inputs = build_inputs(
        promotion,
        {"criticality": "high"},
        app.clock().isoformat(),
        (),
        (),
        (),
        (),
        approval_facts(requests),
        None,
    )
    outcome = app.record_gate(UUID(promotion_id), inputs, 0, "manual", 0)
    assert outcome.decision_id is not None
    return outcome.decision_id


def _promote_with_approval(
    app: PearlApp, story: Story, operator: Principal, approver: Principal, version: str
) -> str:
    result = app.request_promotion(
        operator, UUID(story.project), RequestPromotion(version=version, to="dev")
    )
    promotion: str = result.ids["id"]
    request: str = result.ids["approval_request_id"]
    story.promotions.append(promotion)
    story.approvals.append(request)
    story.decisions.append(_gate(app, promotion, []))  # awaiting approval
    app.comment_approval(approver, UUID(request), CommentApproval(text=f"checked {version}"))
    app.decide_approval(approver, UUID(request), DecideApproval(decision="approve"))
    story.decisions.append(_gate(app, promotion, [request]))  # passed
    app.promote(operator, UUID(promotion))
    return promotion


def governance_story(
    app: PearlApp, admin: Principal, org: str, project: UUID, clock: SteppingClock
) -> Story:
    """Run the whole story; `app` must use `clock`."""
    story = Story(project=str(project))
    operator = _principal(app, admin, org, "operator")
    approver = _principal(app, admin, org, "approver")
    app.set_profile(admin, project, SetProfile(criticality="high", owner_team="payments"))
    critical = RecordFinding(
        tool="gitleaks", rule_id="aws-key", title="AWS key", severity="critical"
    )
    overdue = UUID(app.record_finding(operator, project, critical).ids["id"])
    rule: dict[str, Any] = {"id": "sign-off", "kind": "approvals", "roles": ["approver"]}
    for ttl, reason in ((1, "sign-off for dev"), (2, "a longer sign-off window")):
        policy = {"rules": [{**rule, "ttl_hours": ttl}]}
        result = app.set_policy(admin, org, None, "dev", SetPolicy(policy=policy, reason=reason))
        story.policy = result.ids["id"]
    for version, commit in (("1.0.0", COMMIT_1), ("1.1.0", COMMIT_2)):
        cmd = RegisterVersion(version=version, commit=commit, author="dev@example.com")
        story.versions.append(app.register_version(operator, project, cmd).ids["id"])
    cmd_tests = SubmitTestResults(commit=COMMIT_1, passed=10, failed=1, skipped=2, coverage=0.8)
    story.tests.append(app.submit_test_results(operator, project, cmd_tests).ids["id"])

    _promote_with_approval(app, story, operator, approver, "1.0.0")
    _promote_with_approval(app, story, operator, approver, "1.1.0")
    app.rollback(operator, project, "dev", "1.1.0 broke checkout")

    # 1.1.0 again: its first approval request expires, the second is voided by the rejection.
    result = app.request_promotion(operator, project, RequestPromotion(version="1.1.0", to="dev"))
    promotion = result.ids["id"]
    story.promotions.append(promotion)
    story.approvals.append(result.ids["approval_request_id"])
    clock.advance(hours=3)
    assert app.expire_approval(UUID(result.ids["approval_request_id"]))
    story.approvals.append(app.request_approval(operator, UUID(promotion)).ids["id"])
    app.reject_promotion(approver, UUID(promotion), "not before the fix")

    _exceptions(app, story, operator, approver, project, clock)
    clock.advance(days=8)  # past the critical finding's 7-day SLA: the scheduler's command
    assert app.breach_slas([overdue]) == 1
    return story


def _exceptions(
    app: PearlApp,
    story: Story,
    operator: Principal,
    approver: Principal,
    project: UUID,
    clock: SteppingClock,
) -> None:
    def request(name: str, days: int, **scope: Any) -> UUID:
        cmd = RequestException(
            justification=f"accepted risk: {name}",
            compensating_controls=["waf rule 12"],
            expires_at=clock() + timedelta(days=days),
            **scope,
        )
        exception_id = app.request_exception(operator, project, cmd).ids["id"]
        story.exceptions[name] = exception_id
        return UUID(exception_id)

    active = request("active", 30, rule_id="python.sqli", environment="dev")
    app.decide_exception(approver, active, DecideException(decision="approve"))
    rejected = request("rejected", 30, cwe="CWE-89")
    app.decide_exception(approver, rejected, DecideException(decision="reject", reason="no"))
    revoked = request("revoked", 30, rule_id="B101")
    app.revoke_exception(approver, revoked, "fixed instead")
    expired = request("expired", 1, rule_id="B102")
    clock.advance(days=2)
    assert app.expire_exception(expired)
