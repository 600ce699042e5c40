"""Governance commands over the bus (`CommandProcessor.execute`, in-memory store): the same
Application methods as HTTP, the subject's org checked against the aggregate's."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from contracts.governance import SetPolicy
from contracts.schemas import BUS_COMMANDS
from contracts.subjects import Subjects
from domain.approval import ApprovalRequest
from domain.authz import Principal
from domain.pearl_app import PearlApp
from domain.risk_exception import RiskException
from services.commands import ROUTES
from services.worker import ACK, CommandProcessor, Outcome
from tests.unit.conftest import START, stored_events

COMMIT = "c" * 40
DENIAL = "pearl.access_denial.recorded.v1"
RULE = {"id": "sign-off", "kind": "approvals", "count": 1, "roles": ["approver"]}


def subject(org: str, aggregate: str, command: str) -> str:
    return Subjects().command(org, aggregate, command)


def send(processor: CommandProcessor, org: str, command: str, token: str, **data: Any) -> Outcome:
    aggregate, verb = command.split(".")
    body = json.dumps({"id": str(uuid4()), "source": "tests", "data": data}).encode()
    return processor.execute(
        subject(org, aggregate, verb), body, {"Authorization": f"Bearer {token}"}
    )


def new_event_types(app: PearlApp, after: int) -> list[str]:
    from domain.wire import to_envelope

    notes = app.recorder.select_notifications(after + 1, 100)
    return [to_envelope(app.mapper.to_domain_event(n), n.id).type for n in notes]


def position(app: PearlApp) -> int:
    return app.recorder.max_notification_id() or 0


def created(app: PearlApp, event: str) -> list[UUID]:
    """The ids of the aggregates whose stored events include `event` (e.g. `X.Requested`)."""
    return [e.originator_id for e, _ in stored_events(app) if type(e).__qualname__ == event]


class Bus:
    """An org with a project gated by one approval, its tokens, and a command processor."""

    def __init__(self, app: PearlApp, org: str, project: UUID, issue: Callable[..., str]):
        self.app = app
        self.org = org
        self.project = str(project)
        self.processor = CommandProcessor(app, None, Subjects())
        self.operator = issue(org, "operator", "approver")  # separation of duties refuses it
        self.approver = issue(org, "approver")
        admin: Principal = app.authenticate(issue(org, "admin"))
        app.set_policy(admin, org, project, "dev", SetPolicy(policy={"rules": [RULE]}, reason="x"))

    def send(self, command: str, token: str, **data: Any) -> Outcome:
        return send(self.processor, self.org, command, token, **data)

    def promotion_awaiting_approval(self) -> str:
        """Register a version and request its promotion over the bus; the approval request id."""
        version = {"project_id": self.project, "version": "1.0.0", "commit": COMMIT}
        assert self.send("version.register", self.operator, **version) == ACK
        promote = {"project_id": self.project, "version": "1.0.0", "to": "dev"}
        assert self.send("promotion.request", self.operator, **promote) == ACK
        [request] = created(self.app, "ApprovalRequest.Requested")
        return str(request)


@pytest.fixture
def bus(app: PearlApp, org: str, project: UUID, issue_token: Callable[..., str]) -> Bus:
    return Bus(app, org, project, issue_token)


def test_every_bus_route_is_documented_with_its_body_when_routes_change() -> None:
    assert {key: route.body for key, route in ROUTES.items()} == BUS_COMMANDS


def test_approval_decided_over_the_bus_is_an_event_when_the_approver_decides(bus: Bus) -> None:
    request = bus.promotion_awaiting_approval()
    before = position(bus.app)

    outcome = bus.send("approval.decide", bus.approver, request_id=request, decision="approve")

    assert outcome == ACK
    assert new_event_types(bus.app, before) == ["pearl.approval_request.decided.v1"]
    assert bus.app.repository.get(UUID(request)).status == "approved"


def test_approval_decide_is_dead_lettered_as_forbidden_when_the_requester_decides(
    bus: Bus,
) -> None:
    request = bus.promotion_awaiting_approval()
    before = position(bus.app)

    outcome = bus.send("approval.decide", bus.operator, request_id=request, decision="approve")

    assert (outcome.action, outcome.code) == ("dead", "forbidden")
    assert "requester" in outcome.reason
    assert new_event_types(bus.app, before) == [DENIAL]


def test_approval_decide_is_not_found_when_the_subject_names_another_org(
    bus: Bus, other_org: str
) -> None:
    request = bus.promotion_awaiting_approval()
    before = position(bus.app)

    outcome = send(
        bus.processor,
        other_org,
        "approval.decide",
        bus.approver,
        request_id=request,
        decision="approve",
    )

    assert (outcome.action, outcome.code) == ("dead", "not-found")
    assert new_event_types(bus.app, before) == [DENIAL]  # in the caller's org, nothing decided
    request_state: ApprovalRequest = bus.app.repository.get(UUID(request))
    assert request_state.status == "pending" and request_state.decisions == []


@pytest.mark.parametrize(
    ("command", "data"),
    [
        ("approval.decide", {"decision": "approve"}),
        ("approval.comment", {"text": "looks fine"}),
        ("exception.decide", {"decision": "approve"}),
        ("promotion.request", {"version": "1.0.0", "to": "dev"}),
    ],
)
def test_bus_command_is_invalid_input_when_the_body_does_not_name_its_target(
    bus: Bus, command: str, data: dict[str, Any]
) -> None:
    before = position(bus.app)

    outcome = bus.send(command, bus.approver, **data)

    assert (outcome.action, outcome.code) == ("dead", "invalid-input")
    assert new_event_types(bus.app, before) == []


def test_governance_story_runs_over_the_bus_when_every_command_is_valid(bus: Bus) -> None:
    request = bus.promotion_awaiting_approval()
    tests = {"project_id": bus.project, "commit": COMMIT, "passed": 3}
    assert bus.send("tests.submit", bus.operator, **tests) == ACK
    comment = {"request_id": request, "text": "checked the changelog"}
    assert bus.send("approval.comment", bus.approver, **comment) == ACK
    expires = (START + timedelta(days=10)).isoformat()
    accept = {
        "project_id": bus.project,
        "rule_id": "python.sqli",
        "justification": "not reachable from the web handlers",
        "expires_at": expires,
    }
    assert bus.send("exception.request", bus.operator, **accept) == ACK
    [exception_id] = created(bus.app, "RiskException.Requested")
    decide = {"exception_id": str(exception_id), "decision": "approve"}
    assert bus.send("exception.decide", bus.approver, **decide) == ACK

    exception: RiskException = bus.app.repository.get(exception_id)
    approval: ApprovalRequest = bus.app.repository.get(UUID(request))
    assert exception.status == "active"
    assert [c["text"] for c in approval.comments] == ["checked the changelog"]
