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
