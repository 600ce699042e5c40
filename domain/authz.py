"""Who may do what: the one table of roles per action, and the org-scoping check."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.errors import CrossOrg, Forbidden

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
    Action.PROMOTION_COMPLETE: frozenset({R.OPERATOR, R.SERVICE, R.ADMIN}),
    Action.PROMOTION_REJECT: frozenset({R.OPERATOR, R.APPROVER, R.ADMIN}),
    Action.ROLLBACK: frozenset({R.OPERATOR, R.ADMIN}),
    # Agents never approve anything (nor decide exceptions): not in these sets, ever.
    Action.APPROVAL_DECIDE: frozenset({R.APPROVER, R.ADMIN}),
    Action.APPROVAL_COMMENT: frozenset(Role) - {R.VIEWER},
    Action.EXCEPTION_REQUEST: frozenset({R.OPERATOR, R.SERVICE, R.ADMIN, R.AGENT}),
    Action.EXCEPTION_DECIDE: frozenset({R.APPROVER, R.ADMIN}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: which org it acts in and with which roles."""

    id: str
    org: str
    roles: frozenset[Role]
    kind: str = "service"  # human | service | agent | system
    name: str = ""
    credential: str = "api_key"  # api_key | jwt

    @property
    def is_platform_admin(self) -> bool:
        return self.org == SYSTEM_ORG and Role.ADMIN in self.roles

    @property
    def actor(self) -> str:
        """How the principal is named in events: `<kind>:<id>`."""
        return f"{self.kind}:{self.id}"


def authorize(principal: Principal, action: Action, org: str) -> None:
    """Allow or raise: another org's things are invisible (NotFound); a missing role, Forbidden."""
    if principal.is_platform_admin:
        return
    if principal.org != org:
        raise CrossOrg(f"org {org!r} not found")
    if not principal.roles & PERMISSIONS[action]:
        roles = ", ".join(sorted(principal.roles))
        raise Forbidden(f"roles [{roles}] may not {action.value}")
