"""Unit-test fixtures: the PeaRL Application on in-memory persistence with a controllable clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from contracts.agents import RegisterAgent
from contracts.commands import CreateOrg, CreateProject, IssueApiKey, RecordFinding
from domain.authz import Principal
from domain.pearl_app import PearlApp

START = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
ORG = "acme"
OTHER_ORG = "globex"


class FakeClock:
    """A clock that only moves when a test advances it."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def stored_events(app: PearlApp) -> list[tuple[Any, int]]:
    """Every stored domain event with its notification position, oldest first."""
    notifications = app.recorder.select_notifications(1, 10_000)
    return [(app.mapper.to_domain_event(n), n.id) for n in notifications]


def event_names(app: PearlApp) -> list[str]:
    return [type(event).__qualname__ for event, _ in stored_events(app)]


def finding_cmd(**overrides: Any) -> RecordFinding:
    body: dict[str, Any] = {
        "tool": "semgrep",
        "rule_id": "python.sqli",
        "title": "SQL injection",
        "severity": "high",
        "path": "app/db.py",
        "line": 42,
        "message": "tainted query",
    }
    body.update(overrides)
    return RecordFinding(**body)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(clock: FakeClock) -> PearlApp:
    return PearlApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)


@pytest.fixture
def platform_admin(app: PearlApp) -> Principal:
    return app.authenticate(app.bootstrap_admin_key())


@pytest.fixture
def org(app: PearlApp, platform_admin: Principal) -> str:
    app.create_org(platform_admin, CreateOrg(slug=ORG, name="Acme"))
    return ORG


@pytest.fixture
def other_org(app: PearlApp, platform_admin: Principal) -> str:
    app.create_org(platform_admin, CreateOrg(slug=OTHER_ORG, name="Globex"))
    return OTHER_ORG


@pytest.fixture
def issue_token(app: PearlApp, platform_admin: Principal) -> Callable[..., str]:
    """Issue a key in an org with the given roles and return its token."""

    def issue(org: str, *roles: str, expires_in_days: int | None = None) -> str:
        if roles == ("agent",):  # agent credentials come with a registered agent
            slug = f"agent-{uuid4().hex[:8]}"
            agent = RegisterAgent(slug=slug, name=slug, owner="team", autonomy={"*": "act"})
            return app.register_agent(platform_admin, org, agent).secret["token"]
        cmd = IssueApiKey(name="test key", roles=list(roles), expires_in_days=expires_in_days)
        return app.issue_api_key(platform_admin, org, cmd).secret["token"]

    return issue


@pytest.fixture
def principal_of(app: PearlApp, issue_token: Callable[..., str]) -> Callable[..., Principal]:
    """An authenticated principal of an org with the given roles."""

    def make(org: str, *roles: str) -> Principal:
        return app.authenticate(issue_token(org, *roles))

    return make


@pytest.fixture
def org_admin(org: str, principal_of: Callable[..., Principal]) -> Principal:
    return principal_of(org, "admin")


@pytest.fixture
def operator(org: str, principal_of: Callable[..., Principal]) -> Principal:
    return principal_of(org, "operator")


@pytest.fixture
def project(app: PearlApp, org: str, org_admin: Principal) -> UUID:
    result = app.create_project(org_admin, org, CreateProject(slug="web", name="Web"))
    return UUID(result.ids["id"])
