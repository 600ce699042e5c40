"""Agents in the loop through the Application (in-memory store): autonomy levels, guard rails,
task packets and their leases, the kill switch, verification, and refusals as audit events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from uuid import UUID

import pytest

from contracts.agents import PauseAgent, RegisterAgent, ResumeAgent, SetAutonomy
from contracts.commands import IssueApiKey
from contracts.governance import DecideApproval, RequestPromotion
from contracts.tasks import ClaimTask, CompleteTask, CreateTasks, ReleaseTask, TaskHeartbeat
from domain.authz import Action, AgentGrant, Principal, Role, authorize
from domain.errors import (
    AutonomyExceeded,
    Conflict,
    Forbidden,
    GuardRailViolation,
    InvalidInput,
    LeaseConflict,
)
from domain.pearl_app import PearlApp
from domain.promotion import Promotion
from domain.remediation import GuardRails, Target, guidance, path_allowed, plan_packets, priority
from domain.task_packet import TaskPacket
from tests.support.agents import agents_story, code_finding, full_scan
from tests.unit.conftest import START, FakeClock, event_names, finding_cmd, stored_events
from tests.unit.test_governance import World, policy


def agent_principal(levels: dict[str, str], paused: bool = False) -> Principal:
    grant = AgentGrant("bot", tuple(sorted(levels.items())), paused)
    return Principal("k", "acme", frozenset({Role.AGENT}), kind="agent", agent=grant)


# --- autonomy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "allowed"),
    [
        ("none", set()),
        ("observe", {Action.FINDING_READ}),
        ("propose", {Action.FINDING_READ, Action.TASK_CLAIM, Action.PROMOTION_REQUEST}),
        (
            "act",
            {
                Action.FINDING_READ,
                Action.TASK_CLAIM,
                Action.PROMOTION_REQUEST,
                Action.TASK_COMPLETE,
                Action.PROMOTION_COMPLETE,
            },
        ),
    ],
)
def test_each_autonomy_level_allows_exactly_its_actions(level: str, allowed: set[Action]) -> None:
    caller = agent_principal({"*": level})
    for action in (
        Action.FINDING_READ,
        Action.TASK_CLAIM,
        Action.PROMOTION_REQUEST,
        Action.TASK_COMPLETE,
        Action.PROMOTION_COMPLETE,
    ):
        if action in allowed:
            authorize(caller, action, "acme")
        else:
            with pytest.raises(AutonomyExceeded, match=action.value):
                authorize(caller, action, "acme")


def test_autonomy_is_per_environment_and_star_covers_the_rest() -> None:
    caller = agent_principal({"*": "observe", "dev": "act"})
    authorize(caller, Action.PROMOTION_COMPLETE, "acme", "dev")
    with pytest.raises(AutonomyExceeded, match="'observe' in 'prod'"):
        authorize(caller, Action.PROMOTION_REQUEST, "acme", "prod")


def test_a_paused_or_unregistered_agent_is_refused_everything() -> None:
    with pytest.raises(AutonomyExceeded, match="paused"):
        authorize(agent_principal({"*": "act"}, paused=True), Action.FINDING_READ, "acme")
    unbound = Principal("k", "acme", frozenset({Role.AGENT}), kind="agent")
    with pytest.raises(AutonomyExceeded, match="not bound"):
        authorize(unbound, Action.FINDING_READ, "acme")


def test_agents_can_never_approve_decide_exceptions_or_change_policy_at_any_level() -> None:
    caller = agent_principal({"*": "act"})
    for action in (Action.APPROVAL_DECIDE, Action.EXCEPTION_DECIDE, Action.POLICY_MANAGE):
        with pytest.raises(Forbidden):
            authorize(caller, action, "acme")


def test_agent_credentials_only_come_with_a_registered_agent(
    app: PearlApp, org: str, org_admin: Principal
) -> None:
    with pytest.raises(InvalidInput, match="registered agent"):
        app.issue_api_key(org_admin, org, IssueApiKey(name="bot", roles=["agent"]))
    result = app.register_agent(
        org_admin, org, RegisterAgent(slug="bot", name="Bot", owner="sec", capabilities=["deps"])
    )
    agent = app.authenticate(result.secret["token"])
    assert agent.kind == "agent" and agent.actor == "agent:bot"
    assert agent.agent is not None and agent.agent.level("prod") == "observe"
    with pytest.raises(Conflict):
        app.register_agent(org_admin, org, RegisterAgent(slug="bot", name="B", owner="x"))
    second = app.issue_agent_key(org_admin, org, "bot")
    assert app.authenticate(second.secret["token"]).actor == "agent:bot"


# --- remediation -----------------------------------------------------------------------------


def target(**kw: object) -> Target:
    base: dict[str, object] = {
        "id": "f1",
        "fingerprint": "fp1",
        "tool": "trivy",
        "rule_id": "CVE-1",
        "title": "t",
        "severity": "high",
    }
    return Target(**{**base, **kw})  # type: ignore[arg-type]


def test_guidance_names_the_fix_for_packages_secrets_and_code() -> None:
    upgrade = target(
        package="jinja2", installed_version="2.10", fixed_version="2.11.3", cve=["CVE-1"]
    )
    assert guidance(upgrade) == "Upgrade jinja2 from 2.10 to 2.11.3 or later (CVE-1)."
    assert "No fixed version of jinja2" in guidance(target(package="jinja2"))
    secret = target(tool="gitleaks", rule_id="aws-key", path="cfg.py")
    assert guidance(secret).startswith("Remove the secret from cfg.py, rotate")
    code = target(tool="semgrep", rule_id="sqli", title="SQLi", path="a.py", line=3, message="m")
    assert guidance(code) == "Fix sqli (SQLi) at a.py:3: m."


def test_packets_group_by_rule_file_or_package_and_sort_by_priority() -> None:
    now = START
    items = [
        target(id="1", fingerprint="a", rule_id="r1", path="x.py", severity="low"),
        target(id="2", fingerprint="b", rule_id="r1", path="y.py", severity="critical"),
        target(id="3", fingerprint="c", rule_id="r2", path="x.py", severity="medium"),
    ]
    by_rule = plan_packets(items, "rule", [], 200, now, 10)
    assert [len(p.targets) for p in by_rule] == [2, 1]
    assert by_rule[0].priority == "p1" and by_rule[0].guard_rails.allowed_paths == ["x.py", "y.py"]
    assert by_rule[0].spec["acceptance"]["fingerprints_gone"] == ["a", "b"]
    by_file = plan_packets(items, "file", [], 200, now, 10)
    assert sorted(len(p.targets) for p in by_file) == [1, 2]
    assert len(plan_packets(items, "finding", [], 200, now, 2)) == 2
    with pytest.raises(InvalidInput, match="allowed_paths"):
        plan_packets([target(path=None)], "finding", [], 200, now, 10)


def test_priority_rises_once_the_sla_is_overdue() -> None:
    due = (START - timedelta(days=1)).isoformat()
    assert priority([target(severity="medium")], START) == ("p3", None)
    assert priority([target(severity="medium", sla_due=due)], START) == ("p2", due)


def test_allowed_paths_are_globs_and_never_escape_the_repository() -> None:
    assert path_allowed("src/app/db.py", ["src/**"])
    assert path_allowed("src/db.py", ["src/*.py"])
    assert not path_allowed("src/app/db.py", ["src/*.py"])
    assert path_allowed("requirements.txt", ["**/requirements*.txt"])
    assert not path_allowed("src/../etc/passwd", ["src/**"])
    assert not path_allowed("/etc/passwd", ["**"])
    rails = GuardRails(["a.py"], 10)
    assert rails.violations(["a.py"], 10) == []
    assert len(rails.violations(["b.py"], 11)) == 2


# --- task packets through the Application ----------------------------------------------------


class Agents:
    def __init__(self, app: PearlApp, org: str, project: UUID, admin: Principal) -> None:
        self.app, self.org, self.project, self.admin = app, org, project, admin

    def agent(self, slug: str, level: str = "act") -> Principal:
        cmd = RegisterAgent(slug=slug, name=slug, owner="team", autonomy={"*": level})
        return self.app.authenticate(
            self.app.register_agent(self.admin, self.org, cmd).secret["token"]
        )

    def packet(self, who: Principal, **kw: object) -> UUID:
        fid = self.app.record_finding(who, self.project, finding_cmd(**kw)).ids["id"]
        created = self.app.create_tasks(who, self.project, CreateTasks(finding_ids=[fid]), [])
        return UUID(created.ids["created"][0])

    def denials(self) -> list[str]:
        return [
            e.code
            for e, _ in stored_events(self.app)
            if type(e).__qualname__ == "AccessDenial.Recorded"
        ]


@pytest.fixture
def agents(app: PearlApp, org: str, project: UUID, org_admin: Principal) -> Agents:
    return Agents(app, org, project, org_admin)


def done(path: str = "app/db.py", lines: int = 5) -> CompleteTask:
    return CompleteTask(commit="abcdef1", changed_files=[path], changed_lines=lines, summary="fix")


def test_a_packet_carries_spec_guard_rails_and_priority(
    agents: Agents, operator: Principal
) -> None:
    tid = agents.packet(operator, severity="critical")
    task = agents.app.get_task(operator, tid)
    assert task.status == "open" and task.priority == "p1"
    assert task.guard_rails["allowed_paths"] == ["app/db.py"]
    assert task.spec["acceptance"]["fingerprints_gone"] == [task.targets[0]["fingerprint"]]
    assert "approval.decide" in task.guard_rails["forbidden_operations"]
    again = agents.app.create_tasks(
        operator, agents.project, CreateTasks(finding_ids=task.finding_ids), []
    )
    assert again.ids["created"] == [] and again.ids["existing"] == [str(tid)]


def test_propose_may_claim_but_not_complete_and_the_refusal_is_audited(
    agents: Agents, operator: Principal
) -> None:
    tid = agents.packet(operator)
    proposer = agents.agent("proposer", "propose")
    agents.app.claim_task(proposer, tid, ClaimTask())
    with pytest.raises(AutonomyExceeded) as refused:
        agents.app.complete_task(proposer, tid, done())
    assert refused.value.recorded
    assert agents.denials() == ["autonomy-exceeded"]
    assert agents.app.get_task(operator, tid).status == "claimed"


def test_completion_outside_the_guard_rails_is_refused_and_changes_nothing(
    agents: Agents, operator: Principal
) -> None:
    tid = agents.packet(operator)
    bot = agents.agent("bot")
    agents.app.claim_task(bot, tid, ClaimTask())
    with pytest.raises(GuardRailViolation, match="outside the allowed paths"):
        agents.app.complete_task(bot, tid, done(path="app/auth.py"))
    with pytest.raises(GuardRailViolation, match="exceed the limit 200"):
        agents.app.complete_task(bot, tid, done(lines=201))
    assert agents.denials() == ["guard-rail", "guard-rail"]
    task = agents.app.get_task(operator, tid)
    assert task.status == "claimed" and task.version == 2
    agents.app.complete_task(bot, tid, done())
    assert agents.app.get_task(operator, tid).status == "completed"


def test_leases_are_exclusive_expire_and_can_be_renewed(
    agents: Agents, operator: Principal, clock: FakeClock
) -> None:
    tid = agents.packet(operator)
    first, second = agents.agent("first"), agents.agent("second")
    agents.app.claim_task(first, tid, ClaimTask(ttl_seconds=60))
    with pytest.raises(LeaseConflict, match="claimed by agent:first"):
        agents.app.claim_task(second, tid, ClaimTask())
    with pytest.raises(LeaseConflict, match="not held by you"):
        agents.app.complete_task(second, tid, done())
    clock.advance(seconds=50)
    agents.app.heartbeat_task(first, tid, TaskHeartbeat(ttl_seconds=60))
    clock.advance(seconds=50)  # alive only thanks to the heartbeat
    assert agents.app.expire_task_lease(tid) is False
    clock.advance(seconds=11)
    with pytest.raises(LeaseConflict, match="expired"):
        agents.app.complete_task(first, tid, done())
    assert agents.app.expire_task_lease(tid) is True
    agents.app.claim_task(second, tid, ClaimTask())
    assert agents.app.get_task(operator, tid).holder == "agent:second"
    assert agents.denials() == ["lease-conflict"] * 3


def test_release_makes_the_packet_claimable_and_counts_attempts(
    agents: Agents, operator: Principal
) -> None:
    tid = agents.packet(operator)
    bot = agents.agent("bot")
    agents.app.claim_task(bot, tid, ClaimTask())
    agents.app.release_task(bot, tid, ReleaseTask(reason="cannot reproduce", failed=True))
    agents.app.claim_task(operator, tid, ClaimTask())  # people can take packets too
    task = agents.app.get_task(operator, tid)
    assert task.holder == operator.actor and task.attempts == 2


def test_pausing_an_agent_refuses_it_and_releases_its_leases(
    agents: Agents, operator: Principal
) -> None:
    tid = agents.packet(operator)
    bot = agents.agent("bot")
    agents.app.claim_task(bot, tid, ClaimTask())
    paused = agents.app.pause_agent(agents.admin, agents.org, "bot", PauseAgent(reason="x"), [tid])
    assert paused.ids["released"] == [str(tid)]
    assert agents.app.get_task(operator, tid).status == "open"
    token_holder = agents.app.authenticate(
        agents.app.issue_agent_key(agents.admin, agents.org, "bot").secret["token"]
    )
    with pytest.raises(AutonomyExceeded, match="paused"):
        agents.app.claim_task(token_holder, tid, ClaimTask())
    agents.app.resume_agent(agents.admin, agents.org, "bot", ResumeAgent(reason="ok"))
    resumed = agents.app.authenticate(
        agents.app.issue_agent_key(agents.admin, agents.org, "bot").secret["token"]
    )
    agents.app.claim_task(resumed, tid, ClaimTask())


def test_a_claim_that_raced_the_pause_is_taken_back_by_the_sweep(
    agents: Agents, operator: Principal
) -> None:
    tid = agents.packet(operator)
    bot = agents.agent("bot")
    agents.app.claim_task(bot, tid, ClaimTask())
    agents.app.pause_agent(agents.admin, agents.org, "bot", PauseAgent(reason="x"), [])
    assert agents.app.get_task(operator, tid).status == "claimed"  # the read model missed it
    assert agents.app.expire_task_lease(tid, paused_agent="bot") is True
    assert agents.app.get_task(operator, tid).status == "open"


def test_a_full_scan_verifies_or_reopens_completed_packets(
    app: PearlApp, org: str, project: UUID, org_admin: Principal, clock: FakeClock
) -> None:
    story = agents_story(app, org_admin, org, project, clock)
    verified = app.load(TaskPacket, UUID(story.verified), "task")
    reopened = app.load(TaskPacket, UUID(story.reopened), "task")
    assert verified.status == "verified" and verified.remaining == []
    assert reopened.status == "open" and reopened.remaining == [reopened.targets[0]["fingerprint"]]
    revoked = app.load(TaskPacket, UUID(story.revoked), "task")
    assert revoked.status == "open" and revoked.holder is None
    assert "TaskPacket.Verified" in event_names(app) and "Agent.Paused" in event_names(app)


def test_a_scan_before_completion_or_of_another_tool_says_nothing(
    agents: Agents, org_admin: Principal, clock: FakeClock
) -> None:
    app = agents.app
    full_scan(app, org_admin, agents.project, [7], "first")
    bot = agents.agent("bot")
    from domain.finding import finding_id

    fid = finding_id(agents.project, code_finding(7).fingerprint)
    tid = UUID(app.create_tasks(bot, agents.project, CreateTasks(), [fid]).ids["created"][0])
    app.claim_task(bot, tid, ClaimTask())
    app.complete_task(bot, tid, done(path="app/mod7.py"))
    scan_id = _scan_ids(app)[-1]
    assert app.verify_tasks(scan_id, [tid]) == {"verified": 0, "reopened": 0}  # older scan


def _scan_ids(app: PearlApp) -> list[UUID]:
    return [
        UUID(str(e.originator_id))
        for e, _ in stored_events(app)
        if type(e).__qualname__.startswith("ScanReport.")
    ]


# --- promotions by agents ----------------------------------------------------------------------


@pytest.fixture
def world(app: PearlApp, org: str, project: UUID, principal_of: Callable[..., Principal]) -> World:
    return World(app, org, project, principal_of)


def test_an_act_agent_promotes_only_where_no_human_approval_rule_applies(
    world: World, agents: Agents
) -> None:
    app = world.app
    bot = agents.agent("deployer", "observe")
    app.set_autonomy(
        world.admin, world.org, "deployer", SetAutonomy(environment="dev", level="act", reason="r")
    )
    bot = app.authenticate(app.issue_agent_key(world.admin, world.org, "deployer").secret["token"])
    world.register()
    promotion = UUID(
        app.request_promotion(bot, world.project, RequestPromotion(version="1.0.0", to="dev")).ids[
            "id"
        ]
    )
    with pytest.raises(AutonomyExceeded, match="'observe' in 'staging'"):
        app.request_promotion(bot, world.project, RequestPromotion(version="1.0.0", to="staging"))
    world.evaluate(promotion)
    app.promote(bot, promotion)
    assert app.load(Promotion, promotion, "p").status == "promoted"

    rule = {"id": "one-approver", "kind": "approvals", "count": 1, "roles": ["approver"]}
    app.set_policy(world.admin, world.org, world.project, "dev", policy(rule))
    world.register("1.1.0")
    second = UUID(
        app.request_promotion(bot, world.project, RequestPromotion(version="1.1.0", to="dev")).ids[
            "id"
        ]
    )
    outcome = world.evaluate(second)
    assert outcome.decision is not None and outcome.decision.result == "awaiting_approval"
    approval = app.load(Promotion, second, "p").approval_requests[-1]
    with pytest.raises(Forbidden):
        app.decide_approval(bot, UUID(approval), DecideApproval(decision="approve"))
    app.decide_approval(world.approver, UUID(approval), DecideApproval(decision="approve"))
    assert world.evaluate(second).decision.result == "passed"  # type: ignore[union-attr]
    with pytest.raises(AutonomyExceeded, match="human approval rule"):
        app.promote(bot, second)
    app.promote(world.operator, second)
