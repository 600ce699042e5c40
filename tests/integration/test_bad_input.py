"""Bad input gets a clear problem+json 4xx over HTTP, a DLQ entry over NATS, and changes nothing."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from tests.support.bus import dead_lettered_where
from tests.support.helpers import finding_body, make_org_and_project
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def store_position(stack: Stack) -> int:
    return stack.app.position


def new_event_types(stack: Stack, after: int) -> list[str]:
    from domain.wire import to_envelope

    notes = stack.app.recorder.select_notifications(after + 1, 100)
    return [to_envelope(stack.app.mapper.to_domain_event(n), n.id).type for n in notes]


@pytest.mark.parametrize(
    ("body", "status", "problem_type"),
    [
        (b'{"tool": "semgrep", ', 400, "invalid-request"),
        (json.dumps({**finding_body(), "surprise": 1}).encode(), 400, "invalid-request"),
        (json.dumps({**finding_body(), "line": "forty-two"}).encode(), 400, "invalid-request"),
        (
            json.dumps({**finding_body(), "severity": "apocalyptic"}).encode(),
            400,
            "invalid-request",
        ),
        (b"[]", 400, "invalid-request"),
        (
            json.dumps({**finding_body(), "message": "x" * 2_000_000}).encode(),
            413,
            "payload-too-large",
        ),
    ],
    ids=["malformed", "unknown-field", "wrong-type", "bad-enum", "not-an-object", "oversized"],
)
async def test_bad_http_command_is_problem_json_and_records_nothing(
    stack: Stack, body: bytes, status: int, problem_type: str
):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    before = store_position(stack)
    r = await stack.http.post(
        f"/v1/projects/{project}/findings",
        content=body,
        headers={**stack.admin, "Content-Type": "application/json"},
    )
    assert r.status_code == status
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["type"] == f"urn:pearl:problem:{problem_type}"
    assert problem["status"] == status
    assert problem["detail"]
    assert "Traceback" not in r.text
    assert store_position(stack) == before


async def test_unknown_project_is_404_problem(stack: Stack):
    r = await stack.http.post(
        f"/v1/projects/{uuid.uuid4()}/findings", json=finding_body(), headers=stack.admin
    )
    assert r.status_code == 404
    assert r.json()["type"] == "urn:pearl:problem:not-found"


async def test_duplicate_org_is_409(stack: Stack):
    org = f"dup-{uuid.uuid4().hex[:6]}"
    assert (
        await stack.http.post("/v1/orgs", json={"slug": org, "name": "x"}, headers=stack.admin)
    ).status_code == 201
    r = await stack.http.post("/v1/orgs", json={"slug": org, "name": "x"}, headers=stack.admin)
    assert r.status_code == 409
    assert r.json()["type"] == "urn:pearl:problem:conflict"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "invalid-input"),
        (json.dumps({"id": "c1", "data": {"tool": "x"}}).encode(), "invalid-input"),
        (json.dumps({"id": "c2", "data": {}, "bogus": True}).encode(), "invalid-input"),
        ("wrong-type", "invalid-input"),
        ("no-auth", "unauthenticated"),
        ("unknown-command", "unknown-command"),
    ],
    ids=[
        "malformed",
        "missing-fields",
        "unknown-envelope-field",
        "wrong-type",
        "no-credential",
        "unknown-command",
    ],
)
async def test_bad_bus_command_goes_to_dlq_with_reason_and_records_nothing(
    stack: Stack, payload: bytes | str, code: str
):
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    await asyncio.sleep(0.2)  # let the project's own events settle before measuring
    before = store_position(stack)
    subject = stack.subjects.command(org, "finding", "record")
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    marker = str(uuid.uuid4())
    data = {**finding_body(), "project_id": project}
    if payload == "wrong-type":
        payload = json.dumps({"id": marker, "data": {**data, "line": "x"}}).encode()
    elif payload == "no-auth":
        payload, headers = json.dumps({"id": marker, "data": data}).encode(), {}
    elif payload == "unknown-command":
        subject = stack.subjects.command(org, "finding", "obliterate")
        payload = json.dumps({"id": marker, "data": data}).encode()
    assert isinstance(payload, bytes)
    await stack.nc.jetstream().publish(subject, payload, headers={**headers, "Pearl-Test": marker})

    msg = await dead_lettered_where(stack, lambda m: (m.headers or {}).get("Pearl-Test") == marker)
    assert msg.headers["Pearl-Dlq-Code"] == code
    assert msg.headers["Pearl-Dlq-Reason"]
    assert msg.headers["Pearl-Original-Subject"] == subject
    assert "Authorization" not in msg.headers
    assert msg.data == payload
    # nothing is recorded for it, except that a refused credential is itself an audit event
    assert new_event_types(stack, before) == (
        ["pearl.access_denial.recorded.v1"] if code == "unauthenticated" else []
    )
