"""The PeaRL Application, one story per command, on in-memory persistence."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError

from contracts.commands import CreateOrg, CreateProject, IssueApiKey
from domain.api_key import ApiKey, api_key_id
from domain.authz import SYSTEM_ORG, Principal, Role
from domain.errors import (
    ConcurrencyConflict,
    Conflict,
    Forbidden,
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
    Unauthenticated,
)
from domain.finding import Finding, finding_id
from domain.ingest import ScanMeta
from domain.kernel import CommandResult, Idempotency, command_idempotency
from domain.org import org_id
from domain.pearl_app import PearlApp, manual_fingerprint
from domain.project import Project, project_id
from domain.scanners.model import NormalizedFinding, ParsedReport
from tests.unit.conftest import START, FakeClock, event_names, finding_cmd, stored_events


def position(app: PearlApp) -> int:
    return app.recorder.max_notification_id() or 0


@contextmanager
def racing_writer(app: PearlApp, compete: Callable[[], Any]) -> Iterator[None]:
    """Run `compete` once, just before the next save, as another writer would commit first."""
    original = app.save
    state = {"raced": False}

    def save(*aggregates: Any, **kwargs: Any) -> Any:
        if not state["raced"]:
            state["raced"] = True
            compete()
        return original(*aggregates, **kwargs)

    app.save = save  # type: ignore[method-assign]
    try:
        yield
    finally:
        app.save = original  # type: ignore[method-assign]


# --- orgs ---------------------------------------------------------------------------------


def test_create_org_records_the_org_when_caller_is_platform_admin(
    app: PearlApp, platform_admin: Principal
) -> None:
    before = position(app)

    result = app.create_org(platform_admin, CreateOrg(slug="acme", name="Acme Corp"))

    org = app.get_org(platform_admin, "acme")
    assert result.ids == {"org": "acme", "id": str(org_id("acme"))}
    assert result.position == before + 1 == position(app)
    assert not result.replayed
    assert (org.org, org.name, org.created_by) == ("acme", "Acme Corp", platform_admin.actor)


@pytest.mark.parametrize("role", ["admin", "operator", "viewer"])
def test_create_org_raises_forbidden_when_caller_is_an_org_principal_of_that_org(
    app: PearlApp, org: str, principal_of: Callable[..., Principal], role: str
) -> None:
    caller = principal_of(org, role)

    with pytest.raises(Forbidden):
        app.create_org(caller, CreateOrg(slug=org, name="again"))


def test_create_org_raises_forbidden_when_org_admin_creates_a_different_org(
    app: PearlApp, org_admin: Principal
) -> None:
    before = position(app)

    with pytest.raises(Forbidden):
        app.create_org(org_admin, CreateOrg(slug="newco", name="NewCo"))

    assert position(app) == before


def test_create_org_raises_conflict_when_slug_already_exists(
    app: PearlApp, platform_admin: Principal, org: str
) -> None:
    before = position(app)

    with pytest.raises(Conflict, match="already exists"):
        app.create_org(platform_admin, CreateOrg(slug=org, name="Other name"))

    assert position(app) == before
    assert app.get_org(platform_admin, org).name == "Acme"


def test_create_org_raises_conflict_when_slug_is_the_reserved_system_org(
    app: PearlApp, platform_admin: Principal
) -> None:
    before = position(app)

    with pytest.raises(Conflict):
        app.create_org(platform_admin, CreateOrg(slug=SYSTEM_ORG, name="System"))

    assert position(app) == before


def test_get_org_raises_not_found_when_org_does_not_exist(
    app: PearlApp, platform_admin: Principal
) -> None:
    with pytest.raises(NotFound, match="nope"):
        app.get_org(platform_admin, "nope")


def test_get_org_raises_not_found_when_principal_belongs_to_another_org(
    app: PearlApp, org: str, other_org: str, principal_of: Callable[..., Principal]
) -> None:
    outsider = principal_of(other_org, "admin")

    with pytest.raises(NotFound):
        app.get_org(outsider, org)


# --- projects -----------------------------------------------------------------------------


def test_create_project_records_project_with_default_environments_when_org_admin_creates_it(
    app: PearlApp, org: str, org_admin: Principal
) -> None:
    result = app.create_project(org_admin, org, CreateProject(slug="web", name="Web"))

    pid = project_id(org, "web")
    project = app.get_project(org_admin, pid)
    assert result.ids == {"org": org, "id": str(pid), "slug": "web"}
    assert (project.org, project.slug, project.name) == (org, "web", "Web")
    assert project.environments == ["dev", "staging", "prod"]


def test_create_project_keeps_environment_order_when_custom_environments_given(
    app: PearlApp, org: str, org_admin: Principal
) -> None:
    cmd = CreateProject(slug="api", name="Api", environments=["qa", "dev", "prod"])

    result = app.create_project(org_admin, org, cmd)

    assert app.get_project(org_admin, UUID(result.ids["id"])).environments == ["qa", "dev", "prod"]


def test_create_project_raises_not_found_when_org_does_not_exist(
    app: PearlApp, platform_admin: Principal
) -> None:
    before = position(app)

    with pytest.raises(NotFound, match="ghost"):
        app.create_project(platform_admin, "ghost", CreateProject(slug="web", name="Web"))

    assert position(app) == before


def test_create_project_raises_conflict_when_slug_exists_in_the_org(
    app: PearlApp, org: str, org_admin: Principal, project: UUID
) -> None:
    before = position(app)

    with pytest.raises(Conflict, match="web"):
        app.create_project(org_admin, org, CreateProject(slug="web", name="Other"))

    assert position(app) == before
    assert app.get_project(org_admin, project).name == "Web"


def test_create_project_allows_the_same_slug_when_orgs_differ(
    app: PearlApp, org: str, other_org: str, platform_admin: Principal, project: UUID
) -> None:
    result = app.create_project(platform_admin, other_org, CreateProject(slug="web", name="Web"))

    assert UUID(result.ids["id"]) != project


def test_create_project_raises_invalid_input_when_environments_repeat(
    app: PearlApp, org: str, org_admin: Principal
) -> None:
    cmd = CreateProject(slug="web", name="Web", environments=["dev", "prod", "dev"])
    before = position(app)

    with pytest.raises(InvalidInput, match="unique"):
        app.create_project(org_admin, org, cmd)

    assert position(app) == before


def test_create_project_raises_not_found_when_caller_is_another_orgs_admin(
    app: PearlApp, org: str, other_org: str, principal_of: Callable[..., Principal]
) -> None:
    outsider = principal_of(other_org, "admin")

    with pytest.raises(NotFound):
        app.create_project(outsider, org, CreateProject(slug="web", name="Web"))


@pytest.mark.parametrize("role", ["viewer", "operator", "service", "agent", "auditor", "approver"])
def test_create_project_raises_forbidden_when_caller_is_not_an_admin(
    app: PearlApp, org: str, principal_of: Callable[..., Principal], role: str
) -> None:
    with pytest.raises(Forbidden):
        app.create_project(principal_of(org, role), org, CreateProject(slug="web", name="Web"))


def test_get_project_raises_not_found_when_caller_is_from_another_org(
    app: PearlApp, other_org: str, principal_of: Callable[..., Principal], project: UUID
) -> None:
    with pytest.raises(NotFound):
        app.get_project(principal_of(other_org, "admin"), project)


def test_get_project_raises_not_found_when_id_is_of_another_aggregate_type(
    app: PearlApp, org: str, org_admin: Principal
) -> None:
    with pytest.raises(NotFound):
        app.get_project(org_admin, org_id(org))


# --- findings -----------------------------------------------------------------------------


def test_record_finding_records_an_open_finding_when_fingerprint_is_new(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    result = app.record_finding(operator, project, finding_cmd(cwe=["CWE-89"]))

    finding = app.get_finding(operator, UUID(result.ids["id"]))
    assert event_names(app)[-1] == "Finding.Recorded"
    assert result.ids["project_id"] == str(project)
    assert UUID(result.ids["id"]) == finding_id(project, result.ids["fingerprint"])
    assert (finding.status, finding.severity, finding.tool) == ("open", "high", "semgrep")
    assert finding.details == {
        "path": "app/db.py",
        "line": 42,
        "message": "tainted query",
        "cwe": ["CWE-89"],
        "cve": [],
    }
    assert finding.first_seen == finding.last_seen == START.isoformat()
    assert finding.scan_count == 0


def test_record_finding_marks_seen_again_when_the_same_fingerprint_is_recorded(
    app: PearlApp, operator: Principal, project: UUID, clock: FakeClock
) -> None:
    first = app.record_finding(operator, project, finding_cmd())
    clock.advance(hours=3)

    second = app.record_finding(operator, project, finding_cmd())

    finding = app.get_finding(operator, UUID(second.ids["id"]))
    assert second.ids == first.ids
    assert second.position == first.position + 1
    assert event_names(app)[-2:] == ["Finding.Recorded", "Finding.SeenAgain"]
    assert finding.first_seen == START.isoformat()
    assert finding.last_seen == clock.now.isoformat()
    assert finding.scan_count == 1


def test_record_finding_keeps_identity_when_only_the_line_moves(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    first = app.record_finding(operator, project, finding_cmd(line=42))

    moved = app.record_finding(operator, project, finding_cmd(line=97))

    assert moved.ids["id"] == first.ids["id"]
    assert event_names(app)[-1] == "Finding.SeenAgain"


def test_record_finding_keeps_identity_when_message_whitespace_differs(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    first = app.record_finding(operator, project, finding_cmd(message="tainted  query\n"))

    second = app.record_finding(operator, project, finding_cmd(message=" tainted query"))

    assert second.ids["id"] == first.ids["id"]


@pytest.mark.parametrize(
    "change",
    [{"path": "app/other.py"}, {"rule_id": "python.xss"}, {"tool": "bandit"}, {"message": "x"}],
)
def test_record_finding_creates_a_new_finding_when_identity_fields_change(
    app: PearlApp, operator: Principal, project: UUID, change: dict[str, Any]
) -> None:
    first = app.record_finding(operator, project, finding_cmd())

    second = app.record_finding(operator, project, finding_cmd(**change))

    assert second.ids["id"] != first.ids["id"]
    assert event_names(app)[-1] == "Finding.Recorded"


def test_manual_fingerprint_ignores_line_and_uses_title_when_message_is_empty() -> None:
    with_line = manual_fingerprint(finding_cmd(message="", line=1))
    other_line = manual_fingerprint(finding_cmd(message="", line=2))
    other_title = manual_fingerprint(finding_cmd(message="", line=1, title="XSS"))

    assert with_line == other_line
    assert with_line != other_title
    assert len(with_line) == 64


def test_record_finding_uses_the_given_fingerprint_when_one_is_supplied(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    result = app.record_finding(operator, project, finding_cmd(fingerprint="fp-0123456789"))

    assert result.ids["fingerprint"] == "fp-0123456789"
    assert result.ids["id"] == str(finding_id(project, "fp-0123456789"))


@pytest.mark.parametrize("role", ["viewer", "auditor", "approver"])
def test_record_finding_raises_forbidden_when_caller_may_only_read(
    app: PearlApp, org: str, principal_of: Callable[..., Principal], project: UUID, role: str
) -> None:
    reader = principal_of(org, role)
    before = position(app)

    with pytest.raises(Forbidden):
        app.record_finding(reader, project, finding_cmd())

    assert position(app) == before


@pytest.mark.parametrize("role", ["operator", "service", "agent", "admin"])
def test_record_finding_succeeds_when_caller_has_a_writing_role(
    app: PearlApp, org: str, principal_of: Callable[..., Principal], project: UUID, role: str
) -> None:
    result = app.record_finding(principal_of(org, role), project, finding_cmd())

    assert not result.replayed
    assert event_names(app)[-1] == "Finding.Recorded"


def test_record_finding_raises_not_found_when_project_is_unknown(
    app: PearlApp, operator: Principal
) -> None:
    with pytest.raises(NotFound, match="project"):
        app.record_finding(operator, uuid4(), finding_cmd())


def test_record_finding_raises_not_found_when_project_belongs_to_another_org(
    app: PearlApp, other_org: str, principal_of: Callable[..., Principal], project: UUID
) -> None:
    outsider = principal_of(other_org, "admin")

    with pytest.raises(NotFound):
        app.record_finding(outsider, project, finding_cmd())


def test_get_finding_raises_not_found_when_caller_is_from_another_org(
    app: PearlApp,
    operator: Principal,
    other_org: str,
    principal_of: Callable[..., Principal],
    project: UUID,
) -> None:
    result = app.record_finding(operator, project, finding_cmd())

    with pytest.raises(NotFound):
        app.get_finding(principal_of(other_org, "admin"), UUID(result.ids["id"]))


@pytest.mark.parametrize(
    ("severity", "days"), [("critical", 7), ("high", 30), ("medium", 90), ("low", 180)]
)
def test_record_finding_sets_sla_due_by_severity_when_severity_has_an_sla(
    app: PearlApp, operator: Principal, project: UUID, severity: str, days: int
) -> None:
    result = app.record_finding(operator, project, finding_cmd(severity=severity))

    finding = app.get_finding(operator, UUID(result.ids["id"]))
    assert finding.sla_due == (START + timedelta(days=days)).isoformat()


def test_record_finding_sets_no_sla_when_severity_is_info(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    result = app.record_finding(operator, project, finding_cmd(severity="info"))

    assert app.get_finding(operator, UUID(result.ids["id"])).sla_due is None


def test_record_finding_keeps_the_first_sla_when_seen_again_later(
    app: PearlApp, operator: Principal, project: UUID, clock: FakeClock
) -> None:
    app.record_finding(operator, project, finding_cmd(severity="critical"))
    clock.advance(days=5)

    result = app.record_finding(operator, project, finding_cmd(severity="critical"))

    finding = app.get_finding(operator, UUID(result.ids["id"]))
    assert finding.sla_due == (START + timedelta(days=7)).isoformat()


# --- idempotency --------------------------------------------------------------------------


def test_record_finding_replays_the_first_answer_when_key_and_body_repeat(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    idem = command_idempotency("key-1", "recordFinding", project, {"a": 1})
    first = app.record_finding(operator, project, finding_cmd(), idem)
    stored = position(app)

    again = app.record_finding(operator, project, finding_cmd(), idem)

    assert again == CommandResult(first.ids, first.position, replayed=True)
    assert position(app) == stored
    assert event_names(app).count("Finding.SeenAgain") == 0


def test_record_finding_raises_idempotency_mismatch_when_key_is_reused_with_another_body(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    app.record_finding(operator, project, finding_cmd(), Idempotency("key-1", "hash-a"))
    stored = position(app)

    with pytest.raises(IdempotencyMismatch, match="key-1"):
        app.record_finding(
            operator, project, finding_cmd(title="other"), Idempotency("key-1", "hash-b")
        )

    assert position(app) == stored


def test_create_org_replays_when_key_repeats_instead_of_raising_conflict(
    app: PearlApp, platform_admin: Principal
) -> None:
    idem = Idempotency("org-key", "h")
    first = app.create_org(platform_admin, CreateOrg(slug="acme", name="Acme"), idem)
    stored = position(app)

    again = app.create_org(platform_admin, CreateOrg(slug="acme", name="Acme"), idem)

    assert (again.ids, again.position, again.replayed) == (first.ids, first.position, True)
    assert position(app) == stored


def test_create_project_raises_idempotency_mismatch_when_key_is_reused_with_another_body(
    app: PearlApp, org: str, org_admin: Principal
) -> None:
    app.create_project(org_admin, org, CreateProject(slug="web", name="Web"), Idempotency("k", "1"))
    stored = position(app)

    with pytest.raises(IdempotencyMismatch):
        app.create_project(
            org_admin, org, CreateProject(slug="api", name="Api"), Idempotency("k", "2")
        )

    assert position(app) == stored


def test_idempotency_keys_are_scoped_per_org_when_two_orgs_use_the_same_key(
    app: PearlApp, platform_admin: Principal, org: str, other_org: str
) -> None:
    first = app.create_project(
        platform_admin, org, CreateProject(slug="web", name="Web"), Idempotency("k", "1")
    )

    second = app.create_project(
        platform_admin, other_org, CreateProject(slug="web", name="Web"), Idempotency("k", "2")
    )

    assert not second.replayed
    assert second.ids["id"] != first.ids["id"]


def test_command_idempotency_is_none_when_no_key_given() -> None:
    assert command_idempotency(None, "x") is None
    assert command_idempotency("", "x") is None


def test_command_idempotency_hash_depends_on_the_request_when_key_is_given() -> None:
    same_a = command_idempotency("k", "recordFinding", {"a": 1, "b": 2})
    same_b = command_idempotency("k", "recordFinding", {"b": 2, "a": 1})
    other = command_idempotency("k", "recordFinding", {"a": 2, "b": 2})

    assert same_a == same_b
    assert same_a is not None and other is not None
    assert same_a.request_hash != other.request_hash


# --- concurrency --------------------------------------------------------------------------


def test_save_raises_integrity_error_when_a_stale_copy_of_a_finding_is_saved(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    fid = UUID(app.record_finding(operator, project, finding_cmd()).ids["id"])
    first = app.repository.get(fid)
    second = app.repository.get(fid)
    first.fix(scan_id="s1", fixed_at=START.isoformat(), actor="service:x")
    second.triage("accepted_risk", "we accept it", actor="service:y")
    app.save(first)

    with pytest.raises(IntegrityError):
        app.save(second)

    assert app.get_finding(operator, fid).status == "fixed"


def test_record_finding_raises_concurrency_conflict_when_another_writer_records_it_first(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    def compete() -> None:
        app.record_finding(operator, project, finding_cmd())

    with racing_writer(app, compete), pytest.raises(ConcurrencyConflict, match="retry"):
        app.record_finding(operator, project, finding_cmd())

    assert event_names(app).count("Finding.Recorded") == 1


def test_record_finding_replays_when_a_racing_writer_committed_the_same_idempotency_key(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    idem = Idempotency("race-key", "same-body")
    winner: list[CommandResult] = []

    def compete() -> None:
        winner.append(app.record_finding(operator, project, finding_cmd(), idem))

    with racing_writer(app, compete):
        loser = app.record_finding(operator, project, finding_cmd(), idem)

    assert loser.replayed
    assert (loser.ids, loser.position) == (winner[0].ids, winner[0].position)
    assert event_names(app).count("Finding.Recorded") == 1


def test_revoke_raises_concurrency_conflict_when_the_key_is_changed_concurrently(
    app: PearlApp, org: str, org_admin: Principal, issue_token: Callable[..., str]
) -> None:
    key_id = app.authenticate(issue_token(org, "viewer")).id

    def compete() -> None:
        stale = app.repository.get(api_key_id(key_id))
        stale.revoke(reason="other writer", actor="service:other")
        app.save(stale)

    with racing_writer(app, compete), pytest.raises(ConcurrencyConflict):
        app.revoke_api_key(org_admin, org, key_id, "mine")


# --- API keys -----------------------------------------------------------------------------


def test_authenticate_returns_the_principal_when_token_is_valid(
    app: PearlApp, org: str, issue_token: Callable[..., str]
) -> None:
    token = issue_token(org, "operator", "auditor")

    caller = app.authenticate(token)

    assert caller.org == org
    assert caller.roles == {Role.OPERATOR, Role.AUDITOR}
    assert caller.kind == "service"
    assert caller.name == "test key"
    assert token.startswith(f"pk_{org}_{caller.id}")


def test_authenticate_marks_agents_and_platform_admins_when_their_keys_are_used(
    app: PearlApp, org: str, issue_token: Callable[..., str], platform_admin: Principal
) -> None:
    agent = app.authenticate(issue_token(org, "agent"))

    assert agent.kind == "agent"
    assert platform_admin.kind == "system"
    assert platform_admin.is_platform_admin


def test_issue_api_key_never_stores_the_token_when_key_is_issued(
    app: PearlApp, org: str, org_admin: Principal
) -> None:
    result = app.issue_api_key(org_admin, org, IssueApiKey(name="ci", roles=["service"]))

    token = result.secret["token"]
    key = app.repository.get(api_key_id(result.ids["key_id"]))
    assert isinstance(key, ApiKey)
    assert token not in str(vars(key))
    assert token not in str([vars(e) for e, _ in stored_events(app)])
    assert result.body()["token"] == token


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "pk_", "pk_acme", "pk_acme_", "pk__0123456789abcdefXYZ", "pk_acme_short"],
)
def test_authenticate_raises_unauthenticated_when_token_is_malformed(
    app: PearlApp, token: str
) -> None:
    with pytest.raises(Unauthenticated, match="malformed"):
        app.authenticate(token)


def test_authenticate_raises_unauthenticated_when_key_is_unknown(app: PearlApp, org: str) -> None:
    with pytest.raises(Unauthenticated, match="unknown"):
        app.authenticate(f"pk_{org}_0123456789abcdef{'0' * 48}")


def test_authenticate_raises_unauthenticated_when_secret_is_wrong(
    app: PearlApp, org: str, issue_token: Callable[..., str]
) -> None:
    token = issue_token(org, "admin")
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")

    with pytest.raises(Unauthenticated, match="unknown"):
        app.authenticate(tampered)


def test_authenticate_raises_unauthenticated_when_org_prefix_is_changed(
    app: PearlApp, org: str, other_org: str, issue_token: Callable[..., str]
) -> None:
    token = issue_token(org, "admin")
    forged = token.replace(f"pk_{org}_", f"pk_{other_org}_", 1)

    with pytest.raises(Unauthenticated):
        app.authenticate(forged)


def test_authenticate_raises_unauthenticated_when_prefix_claims_the_system_org(
    app: PearlApp, org: str, issue_token: Callable[..., str]
) -> None:
    forged = issue_token(org, "admin").replace(f"pk_{org}_", f"pk_{SYSTEM_ORG}_", 1)

    with pytest.raises(Unauthenticated):
        app.authenticate(forged)


def test_authenticate_raises_unauthenticated_when_key_is_revoked(
    app: PearlApp, org: str, org_admin: Principal, issue_token: Callable[..., str]
) -> None:
    token = issue_token(org, "operator")
    key_id = app.authenticate(token).id

    result = app.revoke_api_key(org_admin, org, key_id, "leaked")

    assert result.ids == {"key_id": key_id}
    with pytest.raises(Unauthenticated, match="revoked"):
        app.authenticate(token)


def test_authenticate_accepts_key_until_it_expires_when_key_has_an_expiry(
    app: PearlApp, org: str, issue_token: Callable[..., str], clock: FakeClock
) -> None:
    token = issue_token(org, "viewer", expires_in_days=1)
    clock.advance(days=1, seconds=-1)
    app.authenticate(token)

    clock.advance(seconds=1)

    with pytest.raises(Unauthenticated, match="expired"):
        app.authenticate(token)


def test_issue_api_key_records_the_expiry_from_the_clock_when_expiry_is_given(
    app: PearlApp, org: str, org_admin: Principal
) -> None:
    result = app.issue_api_key(
        org_admin, org, IssueApiKey(name="ci", roles=["service"], expires_in_days=30)
    )

    key = app.repository.get(api_key_id(result.ids["key_id"]))
    assert datetime.fromisoformat(key.expires_at) == START + timedelta(days=30)


def test_revoke_api_key_raises_conflict_when_key_is_already_revoked(
    app: PearlApp, org: str, org_admin: Principal, issue_token: Callable[..., str]
) -> None:
    key_id = app.authenticate(issue_token(org, "viewer")).id
    app.revoke_api_key(org_admin, org, key_id, "first")
    stored = position(app)

    with pytest.raises(Conflict, match="already revoked"):
        app.revoke_api_key(org_admin, org, key_id, "second")

    assert position(app) == stored


def test_revoke_api_key_raises_not_found_when_key_belongs_to_another_org(
    app: PearlApp,
    org: str,
    other_org: str,
    platform_admin: Principal,
    issue_token: Callable[..., str],
) -> None:
    foreign_token = issue_token(other_org, "admin")
    foreign_key = app.authenticate(foreign_token).id

    with pytest.raises(NotFound):
        app.revoke_api_key(platform_admin, org, foreign_key, "not yours")

    app.authenticate(foreign_token)


def test_revoke_api_key_raises_not_found_when_org_admin_revokes_another_orgs_key(
    app: PearlApp,
    org: str,
    other_org: str,
    org_admin: Principal,
    issue_token: Callable[..., str],
) -> None:
    foreign_key = app.authenticate(issue_token(other_org, "admin")).id

    with pytest.raises(NotFound):
        app.revoke_api_key(org_admin, other_org, foreign_key, "not yours")
    with pytest.raises(NotFound):
        app.revoke_api_key(org_admin, org, foreign_key, "not yours")


def test_revoke_api_key_raises_not_found_when_key_is_unknown(
    app: PearlApp, org: str, org_admin: Principal
) -> None:
    with pytest.raises(NotFound):
        app.revoke_api_key(org_admin, org, "0123456789abcdef", "gone")


def test_issue_api_key_raises_forbidden_when_caller_is_not_an_admin(
    app: PearlApp, org: str, operator: Principal
) -> None:
    with pytest.raises(Forbidden):
        app.issue_api_key(operator, org, IssueApiKey(name="x", roles=["admin"]))


def test_issue_api_key_raises_not_found_when_org_does_not_exist(
    app: PearlApp, platform_admin: Principal
) -> None:
    with pytest.raises(NotFound, match="ghost"):
        app.issue_api_key(platform_admin, "ghost", IssueApiKey(name="x", roles=["admin"]))


def test_issue_api_key_raises_not_found_when_org_admin_issues_for_another_org(
    app: PearlApp, other_org: str, org_admin: Principal
) -> None:
    with pytest.raises(NotFound):
        app.issue_api_key(org_admin, other_org, IssueApiKey(name="x", roles=["admin"]))


def test_issue_api_key_issues_platform_admin_keys_when_org_is_system(
    app: PearlApp, platform_admin: Principal
) -> None:
    result = app.issue_api_key(
        platform_admin, SYSTEM_ORG, IssueApiKey(name="second admin", roles=["admin"])
    )

    assert app.authenticate(result.secret["token"]).is_platform_admin


def test_bootstrap_admin_key_returns_distinct_working_tokens_when_called_twice(
    app: PearlApp,
) -> None:
    first, second = app.bootstrap_admin_key(), app.bootstrap_admin_key()

    assert first != second
    assert app.authenticate(first).is_platform_admin
    assert app.authenticate(second).is_platform_admin


# --- loading ------------------------------------------------------------------------------


def test_stored_aggregates_have_the_expected_types_when_loaded(
    app: PearlApp, org: str, project: UUID
) -> None:
    assert isinstance(app.repository.get(project), Project)
    with pytest.raises(NotFound):
        app.load(Finding, project, "finding")


# --- triage -------------------------------------------------------------------------------


def test_triage_finding_records_the_decision_when_caller_is_an_operator(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    fid = UUID(app.record_finding(operator, project, finding_cmd()).ids["id"])

    result = app.triage_finding(operator, fid, "false_positive", "input is a constant")

    finding = app.get_finding(operator, fid)
    assert result.ids == {"id": str(fid), "status": "false_positive"}
    assert (finding.status, finding.justification) == ("false_positive", "input is a constant")
    assert event_names(app)[-1] == "Finding.Triaged"


@pytest.mark.parametrize("role", ["viewer", "service", "agent", "auditor", "approver"])
def test_triage_finding_raises_forbidden_when_caller_may_not_triage(
    app: PearlApp,
    org: str,
    operator: Principal,
    principal_of: Callable[..., Principal],
    project: UUID,
    role: str,
) -> None:
    fid = UUID(app.record_finding(operator, project, finding_cmd()).ids["id"])
    caller = principal_of(org, role)

    with pytest.raises(Forbidden):
        app.triage_finding(caller, fid, "accepted_risk", "fine")

    assert app.get_finding(operator, fid).status == "open"


def test_triage_finding_raises_not_found_when_finding_is_in_another_org(
    app: PearlApp,
    operator: Principal,
    other_org: str,
    principal_of: Callable[..., Principal],
    project: UUID,
) -> None:
    fid = UUID(app.record_finding(operator, project, finding_cmd()).ids["id"])

    with pytest.raises(NotFound):
        app.triage_finding(principal_of(other_org, "admin"), fid, "accepted_risk", "fine")


def test_triage_finding_replays_when_the_same_key_is_sent_twice(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    fid = UUID(app.record_finding(operator, project, finding_cmd()).ids["id"])
    idem = Idempotency("triage-1", "h")
    first = app.triage_finding(operator, fid, "not_affected", "dead code", idem)

    again = app.triage_finding(operator, fid, "not_affected", "dead code", idem)

    assert (again.replayed, again.position, again.ids) == (True, first.position, first.ids)


def test_triage_finding_raises_conflict_when_finding_was_already_triaged(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    fid = UUID(app.record_finding(operator, project, finding_cmd()).ids["id"])
    app.triage_finding(operator, fid, "not_affected", "dead code")

    with pytest.raises(Conflict):
        app.triage_finding(operator, fid, "accepted_risk", "changed mind")


# --- scans --------------------------------------------------------------------------------


def scanned(fingerprint: str, severity: str = "high") -> NormalizedFinding:
    return NormalizedFinding(
        tool="semgrep",
        rule_id=f"rule-{fingerprint}",
        title=f"Issue {fingerprint}",
        severity=severity,
        confidence=None,
        kind="code",
        path="app/x.py",
        line=1,
        end_line=None,
        package=None,
        installed_version=None,
        fixed_version=None,
        cwe=(),
        cve=(),
        message="m",
        fingerprint=fingerprint,
    )


def report(*fingerprints: str) -> ParsedReport:
    return ParsedReport(
        format="semgrep-json",
        tool="semgrep",
        tool_version="1.0",
        findings=tuple(scanned(fp) for fp in fingerprints),
    )


def meta(n: int, full: bool = True) -> ScanMeta:
    return ScanMeta(digest=f"{n:064x}", size=100, full=full)


def status_of(app: PearlApp, caller: Principal, project: UUID, fingerprint: str) -> str:
    return str(app.get_finding(caller, finding_id(project, fingerprint)).status)


def test_submit_scan_records_new_findings_when_the_scope_is_scanned_first(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    result = app.submit_scan(operator, project, report("fp-a", "fp-b", "fp-a"), meta(1))

    assert result.ids["counts"] == {
        "new": 2,
        "seen_again": 0,
        "reopened": 0,
        "fixed": 0,
        "total": 2,
    }
    assert app.get_scan(operator, UUID(result.ids["scan_id"])).digest == f"{1:064x}"
    finding = app.get_finding(operator, finding_id(project, "fp-a"))
    assert (finding.status, finding.scan_count) == ("open", 1)
    assert event_names(app).count("Finding.Recorded") == 2


def test_submit_scan_is_a_no_op_when_the_same_report_is_submitted_again(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    first = app.submit_scan(operator, project, report("fp-a"), meta(1))
    stored = position(app)

    again = app.submit_scan(operator, project, report("fp-a"), meta(1))

    assert again.replayed
    assert again.ids == first.ids
    assert position(app) == stored


def test_submit_scan_fixes_then_reopens_a_finding_when_full_scans_drop_and_restore_it(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    app.submit_scan(operator, project, report("fp-a", "fp-b"), meta(1))

    dropped = app.submit_scan(operator, project, report("fp-a"), meta(2))

    assert dropped.ids["counts"]["fixed"] == 1
    assert dropped.ids["counts"]["seen_again"] == 1
    assert status_of(app, operator, project, "fp-b") == "fixed"
    assert status_of(app, operator, project, "fp-a") == "open"

    restored = app.submit_scan(operator, project, report("fp-a", "fp-b"), meta(3))

    assert restored.ids["counts"]["reopened"] == 1
    assert status_of(app, operator, project, "fp-b") == "reopened"


def test_submit_scan_fixes_nothing_when_the_scan_is_partial(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    app.submit_scan(operator, project, report("fp-a", "fp-b"), meta(1))

    partial = app.submit_scan(operator, project, report("fp-a"), meta(2, full=False))

    assert partial.ids["counts"]["fixed"] == 0
    assert status_of(app, operator, project, "fp-b") == "open"


def test_submit_scan_does_not_fix_a_triaged_finding_when_a_full_scan_drops_it(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    app.submit_scan(operator, project, report("fp-a", "fp-b"), meta(1))
    app.triage_finding(operator, finding_id(project, "fp-b"), "accepted_risk", "tracked")

    result = app.submit_scan(operator, project, report("fp-a"), meta(2))

    assert result.ids["counts"]["fixed"] == 0
    assert status_of(app, operator, project, "fp-b") == "accepted_risk"


def test_submit_scan_raises_forbidden_when_caller_is_a_viewer(
    app: PearlApp, org: str, principal_of: Callable[..., Principal], project: UUID
) -> None:
    viewer = principal_of(org, "viewer")

    with pytest.raises(Forbidden):
        app.authorize_scan(viewer, project)
    with pytest.raises(Forbidden):
        app.submit_scan(viewer, project, report("fp-a"), meta(1))


def test_submit_scan_raises_not_found_when_project_is_in_another_org(
    app: PearlApp, other_org: str, principal_of: Callable[..., Principal], project: UUID
) -> None:
    with pytest.raises(NotFound):
        app.submit_scan(principal_of(other_org, "operator"), project, report("fp-a"), meta(1))


def test_full_scan_does_not_fix_a_finding_another_tool_still_reports_in_the_same_target(
    app: PearlApp, platform_admin: Principal, project: UUID
) -> None:
    from domain.ingest import ScanMeta
    from domain.scanners import parse_report
    from tests.support.scan_reports import grype_report, trivy_report

    def scan(raw: bytes, digest: str) -> dict[str, int]:
        meta = ScanMeta(digest=digest, size=len(raw), target="image")
        return app.submit_scan(platform_admin, project, parse_report(raw), meta).ids["counts"]

    scan(trivy_report(), "t1")
    scan(grype_report(), "g1")
    counts = scan(trivy_report(with_requests=False), "t2")

    assert counts["fixed"] == 0
    [shared] = [
        f for f in app.load_many(Finding, list_finding_ids(app)).values() if len(f.sources) == 2
    ]
    assert shared.status == "open"


def list_finding_ids(app: PearlApp) -> list[UUID]:
    notes = app.recorder.select_notifications(1, 10_000)
    return [n.originator_id for n in notes if n.topic.endswith("Finding.Recorded")]


def _report_of(n: int) -> ParsedReport:
    findings = tuple(
        NormalizedFinding(
            tool="semgrep",
            rule_id=f"r{i % 3}",
            title=f"t{i}",
            severity="low",
            confidence=None,
            kind="code",
            path=f"src/f{i}.py",
            line=i,
            end_line=None,
            package=None,
            installed_version=None,
            fixed_version=None,
            cwe=(),
            cve=(),
            message="m",
            fingerprint=f"fp-{i:04d}",
        )
        for i in range(n)
    )
    return ParsedReport(format="semgrep", tool="semgrep", tool_version=None, findings=findings)


def test_large_report_is_ingested_in_chunks_with_the_scan_recorded_last(
    app: PearlApp, platform_admin: Principal, project: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    import domain.pearl_app as pearl_app

    monkeypatch.setattr(pearl_app, "INGEST_CHUNK", 10)
    result = app.submit_scan(
        platform_admin, project, _report_of(35), ScanMeta(digest="big", size=1)
    )

    assert result.ids["counts"]["new"] == 35 and result.ids["counts"]["total"] == 35
    names = event_names(app)
    assert names.count("Finding.Recorded") == 35
    assert names[-1] in {"ScanReport.Submitted", "ScanScope.MembershipChanged"}
    assert names.index("ScanReport.Submitted") > max(
        i for i, n in enumerate(names) if n == "Finding.Recorded"
    )


def test_interrupted_chunked_ingest_completes_on_retry_without_doubling_events(
    app: PearlApp, platform_admin: Principal, project: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    import domain.pearl_app as pearl_app

    monkeypatch.setattr(pearl_app, "INGEST_CHUNK", 10)
    real_save = app.save
    calls = {"n": 0}

    def crashing_save(*objs: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("process killed")
        return real_save(*objs, **kwargs)

    monkeypatch.setattr(app, "save", crashing_save)
    meta = ScanMeta(digest="big", size=1)
    with pytest.raises(RuntimeError):
        app.submit_scan(platform_admin, project, _report_of(35), meta)
    assert "ScanReport.Submitted" not in event_names(app)

    monkeypatch.setattr(app, "save", real_save)
    result = app.submit_scan(platform_admin, project, _report_of(35), meta)

    names = event_names(app)
    assert names.count("Finding.Recorded") == 35
    assert names.count("Finding.SeenAgain") == 0
    assert names.count("ScanReport.Submitted") == 1
    assert result.ids["counts"]["total"] == 35


def test_pearl_app_keeps_the_application_name_pearl_it_inherits_from_the_kernel() -> None:
    # eventsourcing would name the subclass "PearlApp": its env prefix and the relay's
    # `pearl_events` table are derived from this name.
    class Extended(PearlApp):
        pass

    assert PearlApp.name == "pearl"
    assert Extended.name == "pearl"
    assert PearlApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).name == "pearl"
