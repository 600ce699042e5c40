"""Who may do what: the one table of roles per action, and the org-scoping check."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.errors import AutonomyExceeded, CrossOrg, Forbidden

SYSTEM_ORG = "system"


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"
    AUDITOR = "auditor"
    SERVICE = "service"
    AGENT = "agent"


class Action(StrEnum):
    ORG_CREATE = "org.create"
    ORG_READ = "org.read"
    PROJECT_CREATE = "project.create"
    PROJECT_READ = "project.read"
    FINDING_RECORD = "finding.record"
    FINDING_READ = "finding.read"
    FINDING_TRIAGE = "finding.triage"
    SCAN_SUBMIT = "scan.submit"
    APIKEY_ISSUE = "apikey.issue"
    APIKEY_REVOKE = "apikey.revoke"
    AUDIT_READ = "audit.read"
    PROFILE_SET = "project.profile"
    POLICY_MANAGE = "policy.manage"
    POLICY_READ = "policy.read"
    VERSION_REGISTER = "version.register"
    TESTS_SUBMIT = "tests.submit"
    PROMOTION_REQUEST = "promotion.request"
    PROMOTION_COMPLETE = "promotion.complete"
    PROMOTION_REJECT = "promotion.reject"
    ROLLBACK = "environment.rollback"
    APPROVAL_DECIDE = "approval.decide"
    APPROVAL_COMMENT = "approval.comment"
    EXCEPTION_REQUEST = "exception.request"
    EXCEPTION_DECIDE = "exception.decide"
    AGENT_MANAGE = "agent.manage"
    AGENT_READ = "agent.read"
    TASK_CREATE = "task.create"
    TASK_READ = "task.read"
    TASK_CLAIM = "task.claim"
    TASK_COMPLETE = "task.complete"


R = Role
#: The one place that says which roles may issue which command or query.
PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.ORG_CREATE: frozenset(),  # platform administrators only
    Action.ORG_READ: frozenset(Role),
    Action.PROJECT_CREATE: frozenset({R.ADMIN}),
    Action.PROJECT_READ: frozenset(Role),
    Action.FINDING_RECORD: frozenset({R.OPERATOR, R.SERVICE, R.ADMIN, R.AGENT}),
    Action.FINDING_READ: frozenset(Role),
    Action.FINDING_TRIAGE: frozenset({R.OPERATOR, R.ADMIN}),
    Action.SCAN_SUBMIT: frozenset({R.OPERATOR, R.SERVICE, R.ADMIN, R.AGENT}),
    Action.APIKEY_ISSUE: frozenset({R.ADMIN}),
    Action.APIKEY_REVOKE: frozenset({R.ADMIN}),
    Action.AUDIT_READ: frozenset({R.AUDITOR, R.ADMIN}),
    Action.PROFILE_SET: frozenset({R.ADMIN}),
    Action.POLICY_MANAGE: frozenset({R.ADMIN}),
    Action.POLICY_READ: frozenset(Role),
    Action.VERSION_REGISTER: frozenset({R.OPERATOR, R.SERVICE, R.ADMIN, R.AGENT}),
    Action.TESTS_SUBMIT: frozenset({R.OPERATOR, R.SERVICE, R.ADMIN, R.AGENT}),
    Action.PROMOTION_REQUEST: frozenset({R.OPERATOR, R.SERVICE, R.ADMIN, R.AGENT}),
    # An agent promotes only at `act` and only through a gate with no human approval rule.
    Action.PROMOTION_COMPLETE: frozenset({R.OPERATOR, R.SERVICE, R.ADMIN, R.AGENT}),
    Action.PROMOTION_REJECT: frozenset({R.OPERATOR, R.APPROVER, R.ADMIN}),
    Action.ROLLBACK: frozenset({R.OPERATOR, R.ADMIN}),
    # Agents never approve anything (nor decide exceptions): not in these sets, ever.
    Action.APPROVAL_DECIDE: frozenset({R.APPROVER, R.ADMIN}),
    Action.APPROVAL_COMMENT: frozenset(Role) - {R.VIEWER},
    Action.EXCEPTION_REQUEST: frozenset({R.OPERATOR, R.SERVICE, R.ADMIN, R.AGENT}),
    Action.EXCEPTION_DECIDE: frozenset({R.APPROVER, R.ADMIN}),
    Action.AGENT_MANAGE: frozenset({R.ADMIN}),
    Action.AGENT_READ: frozenset(Role),
    Action.TASK_CREATE: frozenset({R.OPERATOR, R.SERVICE, R.ADMIN, R.AGENT}),
    Action.TASK_READ: frozenset(Role),
    Action.TASK_CLAIM: frozenset({R.OPERATOR, R.ADMIN, R.AGENT}),
    Action.TASK_COMPLETE: frozenset({R.OPERATOR, R.ADMIN, R.AGENT}),
}

#: Autonomy levels of an agent, least to most: blocked, read only, may propose, may act alone.
LEVELS = ("none", "observe", "propose", "act")
_RANK = {level: rank for rank, level in enumerate(LEVELS)}
_READS = (
    Action.ORG_READ,
    Action.PROJECT_READ,
    Action.FINDING_READ,
    Action.POLICY_READ,
    Action.AGENT_READ,
    Action.TASK_READ,
)
_PROPOSALS = (
    Action.FINDING_RECORD,
    Action.SCAN_SUBMIT,
    Action.VERSION_REGISTER,
    Action.TESTS_SUBMIT,
    Action.PROMOTION_REQUEST,
    Action.EXCEPTION_REQUEST,
    Action.APPROVAL_COMMENT,
    Action.TASK_CREATE,
    Action.TASK_CLAIM,
)
#: The autonomy level an agent needs for each action it has a role for (anything else: `act`).
AGENT_LEVEL: dict[Action, str] = {
    **dict.fromkeys(_READS, "observe"),
    **dict.fromkeys(_PROPOSALS, "propose"),
    Action.TASK_COMPLETE: "act",
    Action.PROMOTION_COMPLETE: "act",
}


@dataclass(frozen=True, slots=True)
class AgentGrant:
    """An agent's standing as authentication found it: levels per environment, kill switch."""

    slug: str
    autonomy: tuple[tuple[str, str], ...]  # (environment or "*", level), sorted
    paused: bool = False

    def level(self, environment: str | None) -> str:
        levels = dict(self.autonomy)
        return levels.get(environment or "*", levels.get("*", "observe"))


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: which org it acts in and with which roles."""

    id: str
    org: str
    roles: frozenset[Role]
    kind: str = "service"  # human | service | agent | system
    name: str = ""
    credential: str = "api_key"  # api_key | jwt
    #: Set for agents: the registered agent the credential belongs to.
    agent: AgentGrant | None = None

    @property
    def is_platform_admin(self) -> bool:
        return self.org == SYSTEM_ORG and Role.ADMIN in self.roles

    @property
    def actor(self) -> str:
        """How the principal is named in events: `<kind>:<id>` (`agent:<slug>` for agents)."""
        if self.agent is not None:
            return f"agent:{self.agent.slug}"
        return f"{self.kind}:{self.id}"


def authorize(
    principal: Principal,
    action: Action,
    org: str,
    environment: str | None = None,
    resource: str | None = None,
) -> None:
    """Allow or raise: another org's things are invisible (NotFound); a missing role, Forbidden.

    `resource` names what was addressed when the org comes from the thing itself, so the
    answer never names another org. An agent also needs the autonomy level the action calls
    for in `environment` (`*` when the action has none), and must not be paused.
    """
    if principal.is_platform_admin:
        return
    if principal.org != org:
        raise CrossOrg(f"{resource} not found" if resource else f"org {org!r} not found")
    if not principal.roles & PERMISSIONS[action]:
        roles = ", ".join(sorted(principal.roles))
        raise Forbidden(f"roles [{roles}] may not {action.value}")
    if principal.kind == "agent":
        check_autonomy(principal, action, environment)


def check_autonomy(principal: Principal, action: Action, environment: str | None) -> None:
    """Refuse an agent what its autonomy level in `environment` does not allow."""
    grant = principal.agent
    if grant is None:
        raise AutonomyExceeded("this agent credential is not bound to a registered agent")
    if grant.paused:
        raise AutonomyExceeded(f"agent {grant.slug!r} is paused")
    level = grant.level(environment)
    needed = AGENT_LEVEL.get(action, "act")
    if _RANK[level] < _RANK[needed]:
        where = f"in {environment!r}" if environment else "outside any environment"
        raise AutonomyExceeded(
            f"agent {grant.slug!r} has autonomy {level!r} {where}; {action.value} needs {needed!r}"
        )
