"""Authorization: the full Action x Role matrix, org scoping and platform administrators."""

from __future__ import annotations

import itertools

import pytest

from domain.authz import PERMISSIONS, SYSTEM_ORG, Action, Principal, Role, authorize
from domain.errors import Forbidden, NotFound

EVERYONE = frozenset(Role)
WRITERS = frozenset({Role.OPERATOR, Role.SERVICE, Role.ADMIN, Role.AGENT})

#: The specification, written out independently of the module's table: changing who may do
#: what must change this table too, deliberately.
SPEC: dict[Action, frozenset[Role]] = {
    Action.ORG_CREATE: frozenset(),
    Action.ORG_READ: EVERYONE,
    Action.PROJECT_CREATE: frozenset({Role.ADMIN}),
    Action.PROJECT_READ: EVERYONE,
    Action.FINDING_RECORD: WRITERS,
    Action.FINDING_READ: EVERYONE,
    Action.FINDING_TRIAGE: frozenset({Role.OPERATOR, Role.ADMIN}),
    Action.SCAN_SUBMIT: WRITERS,
    Action.APIKEY_ISSUE: frozenset({Role.ADMIN}),
    Action.APIKEY_REVOKE: frozenset({Role.ADMIN}),
    Action.AUDIT_READ: frozenset({Role.AUDITOR, Role.ADMIN}),
    Action.PROFILE_SET: frozenset({Role.ADMIN}),
    Action.POLICY_MANAGE: frozenset({Role.ADMIN}),
    Action.POLICY_READ: EVERYONE,
    Action.VERSION_REGISTER: WRITERS,
    Action.TESTS_SUBMIT: WRITERS,
    Action.PROMOTION_REQUEST: WRITERS,
    Action.PROMOTION_COMPLETE: WRITERS,
    Action.PROMOTION_REJECT: frozenset({Role.OPERATOR, Role.APPROVER, Role.ADMIN}),
    Action.ROLLBACK: frozenset({Role.OPERATOR, Role.ADMIN}),
    Action.APPROVAL_DECIDE: frozenset({Role.APPROVER, Role.ADMIN}),
    Action.APPROVAL_COMMENT: EVERYONE - {Role.VIEWER},
    Action.EXCEPTION_REQUEST: WRITERS,
    Action.EXCEPTION_DECIDE: frozenset({Role.APPROVER, Role.ADMIN}),
    Action.AGENT_MANAGE: frozenset({Role.ADMIN}),
    Action.AGENT_READ: EVERYONE,
    Action.TASK_CREATE: WRITERS,
    Action.TASK_READ: EVERYONE,
    Action.TASK_CLAIM: frozenset({Role.OPERATOR, Role.ADMIN, Role.AGENT}),
    Action.TASK_COMPLETE: frozenset({Role.OPERATOR, Role.ADMIN, Role.AGENT}),
}


def test_agents_never_approve_or_decide_exceptions() -> None:
    for action in (
        Action.APPROVAL_DECIDE,
        Action.EXCEPTION_DECIDE,
        Action.POLICY_MANAGE,
        Action.AGENT_MANAGE,
        Action.APIKEY_ISSUE,
    ):
        assert Role.AGENT not in PERMISSIONS[action]


MATRIX = list(itertools.product(Action, Role))


def principal(org: str, *roles: Role) -> Principal:
    return Principal(id="k1", org=org, roles=frozenset(roles))


def test_permissions_table_equals_the_spec_when_compared() -> None:
    assert PERMISSIONS == SPEC


def test_spec_covers_every_action_when_compared_to_the_enum() -> None:
    assert set(SPEC) == set(Action)
    assert len(Role) == 7


@pytest.mark.parametrize(
    ("action", "role"), MATRIX, ids=[f"{a.value}-{r.value}" for a, r in MATRIX]
)
def test_authorize_allows_exactly_the_spec_roles_when_principal_acts_in_its_own_org(
    action: Action, role: Role
) -> None:
    caller = principal("acme", role)

    if role in SPEC[action]:
        authorize(caller, action, "acme")
    else:
        with pytest.raises(Forbidden, match=action.value):
            authorize(caller, action, "acme")


@pytest.mark.parametrize(
    ("action", "role"), MATRIX, ids=[f"{a.value}-{r.value}" for a, r in MATRIX]
)
def test_authorize_raises_not_found_when_principal_addresses_another_org(
    action: Action, role: Role
) -> None:
    with pytest.raises(NotFound, match="globex"):
        authorize(principal("acme", role), action, "globex")


@pytest.mark.parametrize("action", list(Action))
def test_authorize_raises_not_found_for_another_org_when_principal_has_every_role(
    action: Action,
) -> None:
    with pytest.raises(NotFound):
        authorize(principal("acme", *Role), action, "globex")


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("org", ["acme", "globex", SYSTEM_ORG])
def test_authorize_allows_everything_when_principal_is_platform_admin(
    action: Action, org: str
) -> None:
    authorize(principal(SYSTEM_ORG, Role.ADMIN), action, org)


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.ADMIN])
def test_system_principal_is_not_platform_admin_when_it_lacks_the_admin_role(role: Role) -> None:
    caller = principal(SYSTEM_ORG, role)

    assert not caller.is_platform_admin
    with pytest.raises(NotFound):
        authorize(caller, Action.ORG_READ, "acme")


def test_org_admin_is_not_platform_admin_when_org_is_not_system() -> None:
    caller = principal("acme", Role.ADMIN)

    assert not caller.is_platform_admin
    with pytest.raises(Forbidden):
        authorize(caller, Action.ORG_CREATE, "acme")


def test_authorize_allows_when_any_one_of_several_roles_is_permitted() -> None:
    authorize(principal("acme", Role.VIEWER, Role.AUDITOR), Action.AUDIT_READ, "acme")


def test_forbidden_names_the_roles_and_action_when_refused() -> None:
    with pytest.raises(Forbidden) as info:
        authorize(principal("acme", Role.VIEWER, Role.AGENT), Action.FINDING_TRIAGE, "acme")

    assert info.value.detail == "roles [agent, viewer] may not finding.triage"
    assert info.value.code == "forbidden"


def test_principal_without_roles_is_forbidden_when_reading() -> None:
    with pytest.raises(Forbidden):
        authorize(principal("acme"), Action.ORG_READ, "acme")


def test_actor_is_kind_and_id_when_principal_is_named_in_events() -> None:
    caller = Principal(id="k9", org="acme", roles=frozenset({Role.AGENT}), kind="agent")

    assert caller.actor == "agent:k9"
