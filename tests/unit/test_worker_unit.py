"""CommandProcessor.execute: one bus message → one Application call, on in-memory persistence."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest

from contracts.commands import RecordFinding
from contracts.subjects import Subjects
from domain.authz import Principal
from domain.finding import finding_id
from domain.pearl_app import PearlApp, manual_fingerprint
from domain.project import project_id
from services.worker import ACK, CommandProcessor, Outcome
from tests.unit.conftest import event_names

RECORD = "pearl.cmd.acme.finding.record"
CREATE_PROJECT = "pearl.cmd.acme.project.create"


def finding_data(project: UUID | str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "project_id": str(project),
        "tool": "semgrep",
        "rule_id": "python.sqli",
        "title": "SQL injection",
        "severity": "high",
        "path": "app/db.py",
        "line": 42,
    }
    data.update(overrides)
    return data


def envelope(data: Any, command_id: str | None = None, **extra: Any) -> bytes:
    return json.dumps(
        {"id": command_id or str(uuid4()), "source": "tests", "data": data, **extra}
    ).encode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def processor(app: PearlApp) -> CommandProcessor:
    return CommandProcessor(app, None, Subjects())  # type: ignore[arg-type]  # execute never uses js


@pytest.fixture
def operator_token(org: str, issue_token: Callable[..., str]) -> str:
    return issue_token(org, "operator")


def position(app: PearlApp) -> int:
    return app.recorder.max_notification_id() or 0


def new_event_types(app: PearlApp, after: int) -> list[str]:
    """Wire types of the events stored after position `after`."""
    from domain.wire import to_envelope

    notes = app.recorder.select_notifications(after + 1, 100)
    return [to_envelope(app.mapper.to_domain_event(n), n.id).type for n in notes]


DENIAL = "pearl.access_denial.recorded.v1"


def test_execute_acks_and_records_the_finding_when_command_is_valid(
    app: PearlApp, processor: CommandProcessor, project: UUID, operator_token: str
) -> None:
    data = finding_data(project)

    outcome = processor.execute(RECORD, envelope(data), bearer(operator_token))

    assert outcome == ACK
    fid = finding_id(project, manual_fingerprint(RecordFinding(**data)))
    finding = app.get_finding(app.authenticate(operator_token), fid)
    assert (finding.status, finding.title, finding.org) == ("open", "SQL injection", "acme")
    assert [e for e in event_names(app) if e.startswith("Finding.")] == ["Finding.Recorded"]


def test_execute_records_once_when_the_same_envelope_id_is_delivered_twice(
    app: PearlApp, processor: CommandProcessor, project: UUID, operator_token: str
) -> None:
    body = envelope(finding_data(project), command_id="cmd-1")
    processor.execute(RECORD, body, bearer(operator_token))
    stored = position(app)

    again = processor.execute(RECORD, body, bearer(operator_token))

    assert again == ACK
    assert position(app) == stored
    assert event_names(app).count("Finding.Recorded") == 1
    assert "Finding.SeenAgain" not in event_names(app)


def test_execute_marks_seen_again_when_a_new_envelope_repeats_the_finding(
    app: PearlApp, processor: CommandProcessor, project: UUID, operator_token: str
) -> None:
    processor.execute(RECORD, envelope(finding_data(project)), bearer(operator_token))

    outcome = processor.execute(RECORD, envelope(finding_data(project)), bearer(operator_token))

    assert outcome == ACK
    assert event_names(app)[-1] == "Finding.SeenAgain"


def test_execute_dead_letters_when_an_envelope_id_is_reused_with_different_data(
    app: PearlApp, processor: CommandProcessor, project: UUID, operator_token: str
) -> None:
    processor.execute(RECORD, envelope(finding_data(project), "cmd-1"), bearer(operator_token))
    stored = position(app)

    outcome = processor.execute(
        RECORD, envelope(finding_data(project, title="Other"), "cmd-1"), bearer(operator_token)
    )

    assert (outcome.action, outcome.code) == ("dead", "idempotency-key-reused")
    assert position(app) == stored


def test_execute_creates_a_project_when_project_create_is_valid(
    app: PearlApp, processor: CommandProcessor, org: str, issue_token: Callable[..., str]
) -> None:
    admin_token = issue_token(org, "admin")
    data = {"slug": "api", "name": "Api", "environments": ["dev", "prod"]}

    outcome = processor.execute(CREATE_PROJECT, envelope(data), bearer(admin_token))

    assert outcome == ACK
    project = app.get_project(app.authenticate(admin_token), project_id(org, "api"))
    assert project.environments == ["dev", "prod"]


def test_execute_accepts_a_lowercase_authorization_header_when_token_is_valid(
    processor: CommandProcessor, project: UUID, operator_token: str
) -> None:
    headers = {"authorization": f"bearer {operator_token}"}

    assert processor.execute(RECORD, envelope(finding_data(project)), headers) == ACK


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed command envelope"),
        (b"", "malformed command envelope"),
        (b'["a list"]', "malformed command envelope"),
        (b'{"data": {}}', "id"),
        (b'{"id": "c1", "data": []}', "data"),
    ],
)
def test_execute_dead_letters_as_invalid_input_when_the_envelope_is_malformed(
    app: PearlApp, processor: CommandProcessor, operator_token: str, body: bytes, reason: str
) -> None:
    stored = position(app)

    outcome = processor.execute(RECORD, body, bearer(operator_token))

    assert (outcome.action, outcome.code) == ("dead", "invalid-input")
    assert reason in outcome.reason
    assert position(app) == stored


def test_execute_dead_letters_naming_the_field_when_the_envelope_has_an_unknown_field(
    processor: CommandProcessor, project: UUID, operator_token: str
) -> None:
    body = envelope(finding_data(project), token="pk_leak")

    outcome = processor.execute(RECORD, body, bearer(operator_token))

    assert outcome == Outcome(
        "dead", "malformed command envelope: Object contains unknown field `token`", "invalid-input"
    )


@pytest.mark.parametrize(
    "subject", ["pearl.cmd.acme.finding.delete", "pearl.cmd.acme.org.create", "pearl.cmd.acme.x.y"]
)
def test_execute_dead_letters_as_unknown_command_when_route_does_not_exist(
    processor: CommandProcessor, operator_token: str, subject: str
) -> None:
    outcome = processor.execute(subject, envelope({}), bearer(operator_token))

    _, aggregate, command = subject.rsplit(".", 2)
    assert outcome == Outcome("dead", f"unknown command {aggregate}.{command}", "unknown-command")


@pytest.mark.parametrize(
    "subject", ["other.cmd.acme.finding.record", "pearl.evt.acme.finding.record", "pearl.cmd.x"]
)
def test_execute_dead_letters_as_invalid_subject_when_subject_is_not_a_command(
    processor: CommandProcessor, operator_token: str, subject: str
) -> None:
    outcome = processor.execute(subject, envelope({}), bearer(operator_token))

    assert (outcome.action, outcome.code) == ("dead", "invalid-subject")
    assert subject in outcome.reason


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-Api-Key": "pk_acme_whatever"},
    ],
)
def test_execute_dead_letters_as_unauthenticated_when_the_bearer_header_is_missing(
    app: PearlApp, processor: CommandProcessor, project: UUID, headers: dict[str, str]
) -> None:
    stored = position(app)

    outcome = processor.execute(RECORD, envelope(finding_data(project)), headers)

    assert (outcome.action, outcome.code) == ("dead", "unauthenticated")
    assert "Authorization: Bearer" in outcome.reason
    assert new_event_types(app, stored) == [DENIAL]


@pytest.mark.parametrize(
    ("token", "reason"),
    [("pk_nonsense", "malformed API key"), (f"pk_acme_0123456789abcdef{'0' * 48}", "unknown")],
)
def test_execute_dead_letters_as_unauthenticated_when_the_token_is_bad(
    processor: CommandProcessor, project: UUID, token: str, reason: str
) -> None:
    outcome = processor.execute(RECORD, envelope(finding_data(project)), bearer(token))

    assert (outcome.action, outcome.code) == ("dead", "unauthenticated")
    assert reason in outcome.reason


def test_execute_dead_letters_as_unauthenticated_when_the_key_was_revoked(
    app: PearlApp,
    processor: CommandProcessor,
    project: UUID,
    operator_token: str,
    org: str,
    org_admin: Principal,
) -> None:
    app.revoke_api_key(org_admin, org, app.authenticate(operator_token).id, "leaked")

    outcome = processor.execute(RECORD, envelope(finding_data(project)), bearer(operator_token))

    assert outcome == Outcome("dead", "API key revoked", "unauthenticated")


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"line": "42"}, "$.line"),
        ({"severity": "urgent"}, "$.severity"),
        ({"severity": 3}, "$.severity"),
        ({"cwe": "CWE-89"}, "$.cwe"),
        ({"status": "open"}, "status"),
        ({"title": ""}, "$.title"),
    ],
)
def test_execute_dead_letters_naming_the_field_when_command_data_is_invalid(
    app: PearlApp,
    processor: CommandProcessor,
    project: UUID,
    operator_token: str,
    overrides: dict[str, Any],
    where: str,
) -> None:
    stored = position(app)

    outcome = processor.execute(
        RECORD, envelope(finding_data(project, **overrides)), bearer(operator_token)
    )

    assert (outcome.action, outcome.code) == ("dead", "invalid-input")
    assert outcome.reason.startswith("invalid command data: ")
    assert where in outcome.reason
    assert position(app) == stored


@pytest.mark.parametrize("project_ref", [None, "web", "not-a-uuid"])
def test_execute_dead_letters_as_invalid_input_when_project_id_is_not_a_uuid(
    processor: CommandProcessor, operator_token: str, project_ref: str | None
) -> None:
    data = finding_data("x", project_id=project_ref)

    outcome = processor.execute(RECORD, envelope(data), bearer(operator_token))

    assert outcome == Outcome("dead", "data.project_id must be an id (UUID)", "invalid-input")


def test_execute_dead_letters_as_not_found_when_project_is_unknown(
    processor: CommandProcessor, org: str, operator_token: str
) -> None:
    unknown = uuid4()

    outcome = processor.execute(RECORD, envelope(finding_data(unknown)), bearer(operator_token))

    assert (outcome.action, outcome.code) == ("dead", "not-found")
    assert str(unknown) in outcome.reason


def test_execute_dead_letters_as_forbidden_when_caller_may_not_record(
    processor: CommandProcessor, org: str, project: UUID, issue_token: Callable[..., str]
) -> None:
    viewer = issue_token(org, "viewer")

    outcome = processor.execute(RECORD, envelope(finding_data(project)), bearer(viewer))

    assert (outcome.action, outcome.code) == ("dead", "forbidden")
    assert "finding.record" in outcome.reason


def test_execute_dead_letters_as_conflict_when_project_already_exists(
    processor: CommandProcessor, project: UUID, org: str, issue_token: Callable[..., str]
) -> None:
    admin_token = issue_token(org, "admin")

    outcome = processor.execute(
        CREATE_PROJECT, envelope({"slug": "web", "name": "Web"}), bearer(admin_token)
    )

    assert (outcome.action, outcome.code) == ("dead", "conflict")


def test_execute_asks_for_a_retry_when_another_writer_records_the_finding_first(
    app: PearlApp, processor: CommandProcessor, project: UUID, operator_token: str
) -> None:
    original = app.save
    raced: list[bool] = []

    def save(*aggregates: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(True)
            processor.execute(RECORD, envelope(finding_data(project)), bearer(operator_token))
        return original(*aggregates, **kwargs)

    app.save = save  # type: ignore[method-assign]

    outcome = processor.execute(RECORD, envelope(finding_data(project)), bearer(operator_token))

    assert (outcome.action, outcome.code) == ("retry", "concurrency-conflict")
    assert event_names(app).count("Finding.Recorded") == 1


def test_bus_command_for_a_project_of_another_org_than_its_subject_goes_to_dlq() -> None:
    import json
    import uuid

    from contracts.commands import CreateOrg, CreateProject
    from contracts.subjects import Subjects
    from domain.pearl_app import PearlApp
    from services.worker import CommandProcessor

    app = PearlApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    token = app.bootstrap_admin_key()
    admin = app.authenticate(token)
    for slug in ("acme", "globex"):
        app.create_org(admin, CreateOrg(slug=slug, name=slug))
    project = app.create_project(admin, "acme", CreateProject(slug="web", name="Web")).ids["id"]
    body = json.dumps(
        {
            "id": str(uuid.uuid4()),
            "data": {
                "project_id": project,
                "tool": "t",
                "rule_id": "r",
                "title": "x",
                "severity": "low",
            },
        }
    )
    processor = CommandProcessor(app, None, Subjects())
    outcome = processor.execute(
        "pearl.cmd.globex.finding.record", body.encode(), {"Authorization": f"Bearer {token}"}
    )
    assert (outcome.action, outcome.code) == ("dead", "not-found")


# --- deliveries -------------------------------------------------------------------------------


class _Meta:
    def __init__(self, delivered: int) -> None:
        from types import SimpleNamespace

        self.num_delivered = delivered
        self.sequence = SimpleNamespace(stream=42)


class FakeMsg:
    """A JetStream delivery: what the worker calls on it is recorded."""

    def __init__(self, subject: str, data: bytes, delivered: int, headers=None) -> None:
        self.subject = subject
        self.data = data
        self.headers = headers or {}
        self.metadata = _Meta(delivered)
        self.calls: list[str] = []

    async def ack(self) -> None:
        self.calls.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.calls.append("nak")

    async def in_progress(self) -> None:
        self.calls.append("in_progress")


class FakeJs:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish(self, subject: str, body: bytes, headers=None, timeout=None) -> None:
        self.published.append((subject, body, dict(headers or {})))


@pytest.mark.parametrize("delivered", [11, 12])
async def test_a_delivery_past_the_last_one_is_dead_lettered_without_running_it(
    app: PearlApp, delivered: int
) -> None:
    js = FakeJs()
    processor = CommandProcessor(app, js, Subjects())  # type: ignore[arg-type]
    ran = []

    async def never(*_: object) -> Outcome:
        ran.append(True)
        return ACK

    processor.handle = never  # type: ignore[method-assign]
    msg = FakeMsg("pearl.cmd.acme.finding.record", b"{}", delivered)

    await processor.process(msg)  # type: ignore[arg-type]

    assert ran == []
    assert msg.calls == ["ack"]
    ((subject, _, headers),) = js.published
    assert subject == "pearl.dlq.cmd.acme.finding.record"
    assert headers["Pearl-Dlq-Code"] == "undeliverable"
    assert headers["Nats-Msg-Id"] == "dlq-pearl-42"


async def test_a_command_still_failing_at_its_last_delivery_is_dead_lettered_not_dropped(
    app: PearlApp,
) -> None:
    js = FakeJs()
    processor = CommandProcessor(app, js, Subjects())  # type: ignore[arg-type]

    async def broken(*_: object) -> Outcome:
        raise ValueError("a bug")

    processor.handle = broken  # type: ignore[method-assign]
    first, last = (
        FakeMsg("pearl.cmd.acme.finding.record", b"{}", 1, {"Authorization": "Bearer pk"}),
        FakeMsg("pearl.cmd.acme.finding.record", b"{}", 10, {"Authorization": "Bearer pk"}),
    )

    await processor.process(first)  # type: ignore[arg-type]
    await processor.process(last)  # type: ignore[arg-type]

    assert first.calls == ["nak"]
    assert last.calls == ["ack"]
    ((_, _, headers),) = js.published
    assert headers["Pearl-Dlq-Reason"].startswith("gave up after 10 attempts")
    assert "Authorization" not in headers
