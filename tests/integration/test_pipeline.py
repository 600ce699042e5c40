"""HTTP and NATS commands flow through the event store, relay and projector to the read side."""

from __future__ import annotations

import pytest

from tests.support.helpers import (
    eventually,
    finding_body,
    issue_key,
    make_org_and_project,
    publish_command,
    slug,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


async def test_finding_recorded_over_http_is_readable_from_read_model_and_audit(stack: Stack):
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    r = await stack.http.post(
        f"/v1/projects/{project}/findings", json=finding_body(), headers=stack.admin
    )
    assert r.status_code == 201
    position = r.json()["position"]
    assert r.headers["Pearl-Position"] == str(position)

    r = await stack.http.get(
        f"/v1/projects/{project}/findings", params={"min_position": position}, headers=stack.admin
    )
    assert r.status_code == 200
    [item] = r.json()["items"]
    assert (item["rule_id"], item["severity"], item["status"]) == ("python.sqli", "high", "open")
    assert item["org"] == org

    r = await stack.http.get(
        "/v1/audit", params={"project": project, "min_position": position}, headers=stack.admin
    )
    types = [e["type"] for e in r.json()["items"]]
    assert types == ["pearl.project.created.v1", "pearl.finding.recorded.v2"]
    assert all(e["trace_id"] for e in r.json()["items"])


async def test_finding_recorded_over_nats_is_applied_once_when_redelivered(stack: Stack):
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    subject = stack.subjects.command(org, "finding", "record")
    data = {**finding_body(tool="bandit", rule_id="B608"), "project_id": project}
    cid = await publish_command(stack.nc, subject, data, stack.admin_token)
    await publish_command(stack.nc, subject, data, stack.admin_token, command_id=cid)

    async def listed():
        r = await stack.http.get(f"/v1/projects/{project}/findings", headers=stack.admin)
        return r.status_code == 200 and r.json()["items"]

    [item] = await eventually(listed)
    assert item["tool"] == "bandit"

    async def audited():
        r = await stack.http.get("/v1/audit", params={"project": project}, headers=stack.admin)
        return [e for e in r.json()["items"] if e["aggregate"] == "finding"]

    entries = await eventually(audited)
    assert [e["type"] for e in entries] == ["pearl.finding.recorded.v2"]


async def test_same_finding_twice_is_seen_again_not_duplicated(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    first = await stack.http.post(
        f"/v1/projects/{project}/findings", json=finding_body(), headers=stack.admin
    )
    moved = await stack.http.post(
        f"/v1/projects/{project}/findings", json=finding_body(line=99), headers=stack.admin
    )
    assert first.json()["id"] == moved.json()["id"]
    r = await stack.http.get(
        f"/v1/findings/{first.json()['id']}",
        params={"min_position": moved.json()["position"]},
        headers=stack.admin,
    )
    body = r.json()
    assert [h["type"] for h in body["history"]] == [
        "pearl.finding.recorded.v2",
        "pearl.finding.seen_again.v1",
    ]


async def test_idempotency_key_replays_first_answer_and_rejects_other_body(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    headers = {**stack.admin, "Idempotency-Key": slug("idem")}
    url = f"/v1/projects/{project}/findings"
    first = await stack.http.post(url, json=finding_body(), headers=headers)
    again = await stack.http.post(url, json=finding_body(), headers=headers)
    other = await stack.http.post(url, json=finding_body(title="different"), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert other.json()["type"] == "urn:pearl:problem:idempotency-key-reused"
    r = await stack.http.get(
        f"/v1/findings/{first.json()['id']}",
        params={"min_position": first.json()["position"]},
        headers=stack.admin,
    )
    assert len(r.json()["history"]) == 1


async def test_other_org_cannot_see_or_write_project(stack: Stack):
    _, project, position = await make_org_and_project(stack.http, stack.admin)
    other_org, _, _ = await make_org_and_project(stack.http, stack.admin)
    intruder = await issue_key(stack.http, stack.admin, other_org, "admin")
    r = await stack.http.get(
        f"/v1/projects/{project}/findings", params={"min_position": position}, headers=intruder
    )
    assert r.status_code == 404
    r = await stack.http.post(
        f"/v1/projects/{project}/findings", json=finding_body(), headers=intruder
    )
    assert r.status_code == 404
    r = await stack.http.get("/v1/audit", params={"project": project}, headers=intruder)
    assert r.status_code == 404


async def test_viewer_cannot_record_finding(stack: Stack):
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    viewer = await issue_key(stack.http, stack.admin, org, "viewer")
    r = await stack.http.post(
        f"/v1/projects/{project}/findings", json=finding_body(), headers=viewer
    )
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_request_without_key_is_401(stack: Stack):
    r = await stack.http.get("/v1/whoami")
    assert r.status_code == 401
    assert r.json()["type"] == "urn:pearl:problem:unauthenticated"


async def test_health_and_ready(stack: Stack):
    assert (await stack.http.get("/health")).json() == {"status": "ok"}
    r = await stack.http.get("/ready")
    assert r.status_code == 200
    assert r.json()["checks"] == {
        "postgres": "ok",
        "nats": "ok",
        "relay": "ok",
        "projections": "ok",
    }


async def test_audit_filters_by_time_window_and_pages_with_a_cursor(stack: Stack):
    from datetime import UTC, datetime, timedelta

    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    position = 0
    for i in range(5):
        r = await stack.http.post(
            f"/v1/projects/{project}/findings",
            json=finding_body(rule_id=f"r{i}"),
            headers=stack.admin,
        )
        position = r.json()["position"]
    params = {"project": project, "min_position": position, "limit": 2}
    r = await stack.http.get("/v1/audit", params=params, headers=stack.admin)
    first = r.json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    seen = [e["position"] for e in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        r = await stack.http.get(
            "/v1/audit", params={**params, "cursor": cursor}, headers=stack.admin
        )
        seen += [e["position"] for e in r.json()["items"]]
        cursor = r.json()["next_cursor"]
    assert len(seen) == 6 and seen == sorted(seen)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = await stack.http.get(
        "/v1/audit", params={"project": project, "since": future}, headers=stack.admin
    )
    assert r.json()["items"] == []
    r = await stack.http.get(
        "/v1/audit", params={"project": project, "until": future}, headers=stack.admin
    )
    assert len(r.json()["items"]) == 6
