"""Governance through the Application (in-memory store): policies, versions, promotions and
their gate, approvals with separation of duties, exceptions, rollbacks, expiry, replay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from contracts.governance import (
    DecideApproval,
    DecideException,
    RegisterVersion,
    RequestException,
    RequestPromotion,
    SetPolicy,
    SetProfile,
    SubmitTestResults,
)
from domain.authz import Principal
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.governance_app import GateOutcome, ReplayIds, inputs_from_store
from domain.pearl_app import PearlApp
from domain.policy import PolicyInvalid
from domain.promotion import Promotion
from tests.unit.conftest import FakeClock, finding_cmd

COMMIT = "a" * 40


def policy(*rules: dict[str, Any], **extra: Any) -> SetPolicy:
    return SetPolicy(policy={"rules": list(rules), **extra}, reason="test")


class World:
    """An org with a project, principals of each role, and helpers to drive the gate."""

    def __init__(self, app: PearlApp, org: str, project: UUID, make: Callable[..., Principal]):
        self.app = app
        self.org = org
        self.project = project
        self.admin = make(org, "admin")
        self.operator = make(org, "operator")
        self.approver = make(org, "approver")
        self.approver2 = make(org, "approver")
        self.findings: list[UUID] = []
        self.exceptions: list[UUID] = []

    def register(self, version: str = "1.0.0", author: str | None = "human:dev") -> None:
        self.app.register_version(
            self.operator,
            self.project,
            RegisterVersion(version=version, commit=COMMIT, author=author),
        )

    def request(self, to: str = "dev", version: str = "1.0.0") -> UUID:
        result = self.app.request_promotion(
            self.operator, self.project, RequestPromotion(version=version, to=to)
        )
        return UUID(result.ids["id"])

    def evaluate(self, promotion_id: UUID, trigger: str = "manual") -> GateOutcome:
        promotion = self.app.load(Promotion, promotion_id, "promotion")
        ids = ReplayIds(findings=self.findings, exceptions=self.exceptions, scans=[], tests=[])
        inputs, _ = inputs_from_store(self.app, promotion, ids, None, self.app.now())
        position = self.app.position
        return self.app.record_gate(promotion_id, inputs, position, trigger, position)

    def finding(self, severity: str = "high", rule: str = "python.sqli") -> UUID:
        result = self.app.record_finding(
            self.operator, self.project, finding_cmd(severity=severity, rule_id=rule, title=rule)
        )
        fid = UUID(result.ids["id"])
        self.findings.append(fid)
        return fid


@pytest.fixture
def world(app: PearlApp, org: str, project: UUID, principal_of: Callable[..., Principal]) -> World:
    return World(app, org, project, principal_of)


def test_policy_versions_are_events_and_the_same_document_is_a_noop(world: World) -> None:
    app = world.app
    first = app.set_policy(world.admin, world.org, world.project, "prod", policy())
    again = app.set_policy(world.admin, world.org, world.project, "prod", policy())
    assert first.ids["version"] == 1 and first.ids["changed"] is True
    assert again.ids["version"] == 1 and again.ids["changed"] is False
    rule = {"id": "crit", "kind": "max_findings", "severity": "critical", "max": 0}
    second = app.set_policy(world.admin, world.org, world.project, "prod", policy(rule))
    assert second.ids["version"] == 2
    history = app.get_policy(world.operator, world.org, world.project, "prod")
    assert [v["version"] for v in history.versions] == [1, 2]
    assert history.at_version(2)["author"] == world.admin.actor


def test_invalid_policy_and_wrong_environment_and_role_are_refused(world: World) -> None:
    app = world.app
    bad = {"id": "x", "kind": "max_findings", "severity": "critical", "max": -1}
    with pytest.raises(PolicyInvalid) as caught:
        app.set_policy(world.admin, world.org, world.project, "prod", policy(bad))
    assert caught.value.errors[0].location == "rules[0].max"
    with pytest.raises(InvalidInput):
        app.set_policy(world.admin, world.org, world.project, "qa", policy())
    with pytest.raises(Forbidden):
        app.set_policy(world.operator, world.org, world.project, "prod", policy())


def test_project_policy_may_only_tighten_the_baseline(world: World) -> None:
    app = world.app
    base = {"id": "crit", "kind": "max_findings", "severity": "critical", "max": 2}
    app.set_policy(world.admin, world.org, None, "prod", policy(base))
    looser = {**base, "max": 5}
    with pytest.raises(PolicyInvalid) as caught:
        app.set_policy(world.admin, world.org, world.project, "prod", policy(looser))
    assert caught.value.errors[0].location.startswith("rules[0]")
    tighter = {**base, "max": 0}
    assert app.set_policy(world.admin, world.org, world.project, "prod", policy(tighter)).ids[
        "changed"
    ]


def test_promotion_requests_are_checked(world: World) -> None:
    app = world.app
    with pytest.raises(InvalidInput, match="unknown version"):
        world.request()
    world.register()
    with pytest.raises(InvalidInput, match="can only be promoted"):
        app.request_promotion(
            world.operator,
            world.project,
            RequestPromotion(version="1.0.0", to="prod", from_="dev"),
        )
    with pytest.raises(Conflict, match="not live in 'dev'"):
        world.request(to="staging")
    world.request()
    with pytest.raises(Conflict, match="still open"):
        world.request()


def test_gate_passes_fails_and_counts_exceptions(world: World, clock: FakeClock) -> None:
    app = world.app
    rule = {"id": "no-high", "kind": "max_findings", "severity": "high", "max": 0}
    app.set_policy(world.admin, world.org, world.project, "dev", policy(rule))
    fid = world.finding("high")
    world.register()
    pid = world.request()
    failed = world.evaluate(pid)
    assert failed.decision is not None and failed.decision.result == "failed"
    assert failed.decision.rules[0].finding_ids == [str(fid)]
    expires = clock() + timedelta(days=30)
    exc = app.request_exception(
        world.admin,
        world.project,
        RequestException(
            finding_ids=[str(fid)], justification="behind the WAF until Q3", expires_at=expires
        ),
    )
    eid = UUID(exc.ids["id"])
    world.exceptions.append(eid)
    with pytest.raises(Forbidden):  # the requester can never approve their own exception
        app.decide_exception(world.admin, eid, DecideException(decision="approve"))
    app.decide_exception(world.approver, eid, DecideException(decision="approve"))
    passed = world.evaluate(pid)
    assert passed.decision is not None and passed.decision.result == "passed"
    assert passed.decision.rules[0].exception_ids == [str(eid)]
    app.promote(world.operator, pid)
    env = app.get_environment(world.operator, world.project, "dev")
    assert env is not None and env.current is not None and env.current["release"] == "1.0.0"
    clock.advance(days=31)
    assert app.expire_exception(eid) is True
    assert app.expire_exception(eid) is False


def test_exception_expiry_is_bounded_by_policy(world: World, clock: FakeClock) -> None:
    app = world.app
    app.set_policy(world.admin, world.org, world.project, "dev", policy(exception_max_days=10))
    fid = world.finding()
    too_long = RequestException(
        finding_ids=[str(fid)],
        environment="dev",
        justification="accepted for now, really",
        expires_at=clock() + timedelta(days=11),
    )
    with pytest.raises(InvalidInput, match="at most 10 days"):
        app.request_exception(world.operator, world.project, too_long)


def approvals_policy(world: World, count: int = 2) -> None:
    rule = {"id": "two-approvers", "kind": "approvals", "count": count, "roles": ["approver"]}
    world.app.set_policy(world.admin, world.org, world.project, "dev", policy(rule))


def test_approvals_enforce_separation_of_duties(
    world: World, principal_of: Callable[..., Principal]
) -> None:
    app = world.app
    third = principal_of(world.org, "approver")
    approvals_policy(world)
    world.register(author=world.approver2.actor)
    result = app.request_promotion(
        world.operator, world.project, RequestPromotion(version="1.0.0", to="dev")
    )
    pid, rid = UUID(result.ids["id"]), UUID(result.ids["approval_request_id"])
    assert world.evaluate(pid).decision.result == "awaiting_approval"  # type: ignore[union-attr]
    approve = DecideApproval(decision="approve")
    with pytest.raises(Forbidden):  # an operator is not an approver
        app.decide_approval(world.operator, rid, approve)
    with pytest.raises(Forbidden, match="author"):
        app.decide_approval(world.approver2, rid, approve)
    app.decide_approval(world.approver, rid, approve)
    with pytest.raises(Conflict, match="already decided"):
        app.decide_approval(world.approver, rid, approve)
    assert world.evaluate(pid).decision.result == "awaiting_approval"  # type: ignore[union-attr]
    with pytest.raises(Forbidden, match="roles"):  # the rule names its roles; admin is not one
        app.decide_approval(world.admin, rid, approve)
    app.decide_approval(third, rid, approve)
    assert world.evaluate(pid).decision.result == "passed"  # type: ignore[union-attr]


def test_two_approvals_racing_for_the_last_slot(
    world: World, principal_of: Callable[..., Principal]
) -> None:
    from domain.approval import ApprovalRequest

    app = world.app
    approvals_policy(world, count=1)
    world.register()
    result = app.request_promotion(
        world.operator, world.project, RequestPromotion(version="1.0.0", to="dev")
    )
    rid = UUID(result.ids["approval_request_id"])
    first = app.load(ApprovalRequest, rid, "r")
    second = app.load(ApprovalRequest, rid, "r")
    first.decide(world.approver.actor, ["approver"], "approve", "", app.clock())
    second.decide(world.approver2.actor, ["approver"], "approve", "", app.clock())
    app.save(first)
    with pytest.raises(Exception) as caught:
        app.save(second)
    assert "IntegrityError" in type(caught.value).__name__
    stored = app.load(ApprovalRequest, rid, "r")
    assert stored.approvals == 1 and stored.status == "approved"
    with pytest.raises(Conflict):
        app.decide_approval(world.approver2, rid, DecideApproval(decision="approve"))


def test_expired_approval_request_cannot_be_approved_and_can_be_asked_again(
    world: World, clock: FakeClock
) -> None:
    app = world.app
    approvals_policy(world, count=1)
    world.register()
    result = app.request_promotion(
        world.operator, world.project, RequestPromotion(version="1.0.0", to="dev")
    )
    pid, rid = UUID(result.ids["id"]), UUID(result.ids["approval_request_id"])
    clock.advance(hours=73)
    with pytest.raises(Conflict, match="expired"):
        app.decide_approval(world.approver, rid, DecideApproval(decision="approve"))
    assert app.expire_approval(rid) is True
    again = app.request_approval(world.operator, pid)
    app.decide_approval(world.approver, UUID(again.ids["id"]), DecideApproval(decision="approve"))
    assert world.evaluate(pid).decision.result == "passed"  # type: ignore[union-attr]


def test_rejected_promotion_voids_its_approvals_and_frees_the_environment(world: World) -> None:
    from domain.approval import ApprovalRequest

    app = world.app
    approvals_policy(world, count=1)
    world.register()
    result = app.request_promotion(
        world.operator, world.project, RequestPromotion(version="1.0.0", to="dev")
    )
    pid, rid = UUID(result.ids["id"]), UUID(result.ids["approval_request_id"])
    app.reject_promotion(world.approver, pid, "not this week")
    assert app.load(ApprovalRequest, rid, "r").status == "voided"
    with pytest.raises(Conflict):
        app.promote(world.operator, pid)
    world.request()  # the environment takes a new promotion


def test_promote_soak_and_rollback(world: World, clock: FakeClock) -> None:
    app = world.app
    soak = {"id": "soak", "kind": "soak", "hours": 24}
    app.set_policy(world.admin, world.org, world.project, "staging", policy(soak))
    for version in ("1.0.0", "1.1.0"):
        world.register(version)
        pid = world.request(version=version)
        assert world.evaluate(pid).decision.result == "passed"  # type: ignore[union-attr]
        app.promote(world.operator, pid)
    to_staging = world.request("staging", "1.1.0")
    outcome = world.evaluate(to_staging)
    assert outcome.decision is not None and outcome.decision.result == "failed"
    clock.advance(hours=25)
    assert world.evaluate(to_staging).decision.result == "passed"  # type: ignore[union-attr]
    app.reject_promotion(world.operator, to_staging, "withdrawn")
    rolled = app.rollback(world.operator, world.project, "dev", "500s after deploy")
    assert rolled.ids["version"] == "1.0.0"
    again = world.request("staging", "1.0.0")
    soaked = world.evaluate(again).decision
    assert soaked is not None and soaked.result == "failed"  # just went live again
    with pytest.raises(Conflict):
        app.rollback(world.operator, world.project, "prod", "nothing there")


def test_automatic_reevaluation_is_once_per_trigger(world: World) -> None:
    app = world.app
    world.register()
    pid = world.request()
    promotion = app.load(Promotion, pid, "p")
    ids = ReplayIds(findings=[], exceptions=[], scans=[], tests=[])
    inputs, _ = inputs_from_store(app, promotion, ids, None, app.now())
    first = app.record_gate(pid, inputs, 10, "event", 10)
    repeat = app.record_gate(pid, inputs, 10, "event", 10)
    assert first.decision is not None and repeat.decision is None


def test_replay_reproduces_the_recorded_decision(world: World, clock: FakeClock) -> None:
    app = world.app
    rule = {"id": "no-high", "kind": "max_findings", "severity": "high", "max": 0}
    app.set_policy(world.admin, world.org, world.project, "dev", policy(rule))
    world.finding("high")
    world.register()
    pid = world.request()
    outcome = world.evaluate(pid)
    assert outcome.decision_id is not None
    # History moves on: new findings, a new policy version, time passes.
    world.finding("critical", rule="other")
    app.set_policy(world.admin, world.org, world.project, "dev", policy())
    clock.advance(days=3)
    ids = ReplayIds(findings=world.findings, exceptions=[], scans=[], tests=[])
    replay = app.replay_decision(pid, outcome.decision_id, ids)
    assert replay["matches"] is True
    assert replay["replayed"] == replay["recorded"]


def test_profile_and_reads_are_org_scoped(
    world: World, other_org: str, principal_of: Callable[..., Principal]
) -> None:
    app = world.app
    app.set_profile(
        world.admin, world.project, SetProfile(criticality="high", internet_facing=True)
    )
    stranger = principal_of(other_org, "admin")
    with pytest.raises(NotFound):
        app.set_profile(stranger, world.project, SetProfile())
    with pytest.raises(NotFound):
        app.submit_test_results(stranger, world.project, SubmitTestResults(commit=COMMIT, passed=1))
