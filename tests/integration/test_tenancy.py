"""Cross-org attempts on every route (HTTP and NATS) are refused and leave no trace there."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from services.api.openapi import openapi_document
from tests.conftest import samples_dir
from tests.support.bus import dead_lettered
from tests.support.helpers import (
    finding_body,
    issue_key,
    make_org_and_project,
    publish_command,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
PUBLIC = {("GET", "/health"), ("GET", "/ready")}
PLATFORM_ONLY = {("POST", "/v1/orgs")}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/orgs"): {"slug": "stolen-org", "name": "x"},
    ("POST", "/v1/findings/{finding_id}/triage"): {
        "status": "false_positive",
        "justification": "x",
    },
    ("POST", "/v1/orgs/{org}/keys"): {"name": "x", "roles": ["admin"]},
    ("POST", "/v1/orgs/{org}/projects"): {"slug": "stolen", "name": "x"},
    ("POST", "/v1/projects/{project_id}/findings"): finding_body(),
    ("POST", "/v1/projects/{project_id}/targets"): {
        "name": "stolen",
        "kind": "source",
        "location": "/tmp",
        "scanners": ["bandit"],
    },
    ("PUT", "/v1/targets/{target_id}"): {
        "kind": "source",
        "location": "/tmp",
        "scanners": ["bandit"],
    },
    ("POST", "/v1/targets/{target_id}/jobs"): {},
    ("PUT", "/v1/orgs/{org}/policies/{environment}"): {"policy": {"rules": []}, "reason": "x"},
    ("PUT", "/v1/projects/{project_id}/policies/{environment}"): {
        "policy": {"rules": []},
        "reason": "x",
    },
    ("PUT", "/v1/projects/{project_id}/profile"): {"criticality": "low"},
    ("POST", "/v1/projects/{project_id}/versions"): {"version": "6.6.6", "commit": "b" * 40},
    ("POST", "/v1/projects/{project_id}/test-results"): {"commit": "b" * 40, "passed": 1},
    ("POST", "/v1/projects/{project_id}/promotions"): {"version": "1.0.0", "to": "dev"},
    ("POST", "/v1/projects/{project_id}/environments/{environment}/rollback"): {"reason": "x"},
    ("POST", "/v1/projects/{project_id}/exceptions"): {
        "rule_id": "x",
        "justification": "stolen justification",
        "expires_at": "2099-01-01T00:00:00Z",
    },
    ("POST", "/v1/promotions/{promotion_id}/reject"): {"reason": "x"},
    ("POST", "/v1/approvals/{request_id}/decisions"): {"decision": "approve"},
    ("POST", "/v1/approvals/{request_id}/comments"): {"text": "x"},
    ("POST", "/v1/exceptions/{exception_id}/decision"): {"decision": "approve"},
    ("POST", "/v1/exceptions/{exception_id}/revoke"): {"reason": "x"},
    ("POST", "/v1/orgs/{org}/agents"): {"slug": "stolen", "name": "x", "owner": "x"},
    ("PUT", "/v1/orgs/{org}/agents/{slug}/autonomy"): {"level": "act", "reason": "x"},
    ("POST", "/v1/orgs/{org}/agents/{slug}/pause"): {"reason": "x"},
    ("POST", "/v1/orgs/{org}/agents/{slug}/resume"): {"reason": "x"},
    ("POST", "/v1/projects/{project_id}/tasks"): {},
    ("POST", "/v1/projects/{project_id}/tasks/{task_id}/complete"): {
        "changed_files": ["app/db.py"],
        "changed_lines": 1,
        "summary": "stolen",
    },
    ("POST", "/v1/projects/{project_id}/tasks/{task_id}/release"): {"reason": "x"},
}
DEV_POLICY = {"rules": [{"id": "one", "kind": "approvals", "count": 1, "roles": ["approver"]}]}


TARGET = {
    "name": "app",
    "kind": "source",
    "location": "/nonexistent/pearl-test",
    "scanners": ["bandit"],
}


def _first_job(body: dict[str, Any]) -> str:
    first = body["jobs"][0]
    return str(first["id"] if isinstance(first, dict) else first)


def operations() -> list[tuple[str, str]]:
    doc = openapi_document()
    return sorted(
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method in ops
        if method in {"get", "post", "put", "patch", "delete"}
    )


async def victim_resources(stack: Stack) -> dict[str, str]:
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    finding = await stack.http.post(
        f"/v1/projects/{project}/findings", json=finding_body(), headers=stack.admin
    )
    scan = await stack.http.post(
        f"/v1/projects/{project}/scans",
        headers=stack.admin,
        content=json.dumps(
            {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": []}]}
        ).encode(),
    )
    key = await stack.http.post(
        f"/v1/orgs/{org}/keys", json={"name": "v", "roles": ["viewer"]}, headers=stack.admin
    )
    target = await stack.http.post(
        f"/v1/projects/{project}/targets", json=TARGET, headers=stack.admin
    )
    assert target.status_code == 201, target.text
    job = await stack.http.post(
        f"/v1/targets/{target.json()['id']}/jobs", json={}, headers=stack.admin
    )
    assert job.status_code == 202, job.text
    governance = await victim_governance(stack, project)
    agents = await victim_agents(stack, org, project, finding.json()["id"])
    position = max(job.json()["position"], governance.pop("position"), agents.pop("position"))
    await stack.http.get(
        f"/v1/projects/{project}", params={"min_position": position}, headers=stack.admin
    )
    return {
        "org": org,
        "project_id": project,
        "finding_id": finding.json()["id"],
        "scan_id": scan.json()["scan_id"],
        "key_id": key.json()["key_id"],
        "target_id": target.json()["id"],
        "job_id": _first_job(job.json()),
        **governance,
        **agents,
    }


async def victim_agents(stack: Stack, org: str, project: str, finding: str) -> dict[str, Any]:
    """An agent holding a task packet cut from the victim's finding."""
    http, admin = stack.http, stack.admin
    body = {"slug": "victim-bot", "name": "v", "owner": "v", "autonomy": {"*": "act"}}
    r = await http.post(f"/v1/orgs/{org}/agents", json=body, headers=admin)
    assert r.status_code == 201, r.text
    bot = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await http.post(
        f"/v1/projects/{project}/tasks", json={"finding_ids": [finding]}, headers=admin
    )
    assert r.status_code == 201, r.text
    task = r.json()["created"][0]
    r = await http.post(f"/v1/projects/{project}/tasks/{task}/claim", headers=bot)
    assert r.status_code == 200, r.text
    return {"slug": "victim-bot", "task_id": task, "position": r.json()["position"]}


async def victim_governance(stack: Stack, project: str) -> dict[str, Any]:
    """A policy, a version, a promotion with its decision and approval request, an exception."""
    http, admin = stack.http, stack.admin
    base = f"/v1/projects/{project}"
    r = await http.put(
        f"{base}/policies/dev", json={"policy": DEV_POLICY, "reason": "v"}, headers=admin
    )
    assert r.status_code == 200, r.text
    r = await http.post(
        f"{base}/versions", json={"version": "1.0.0", "commit": "a" * 40}, headers=admin
    )
    assert r.status_code == 201, r.text
    r = await http.post(f"{base}/promotions", json={"version": "1.0.0", "to": "dev"}, headers=admin)
    assert r.status_code == 201 and r.json()["gate"], r.text
    promotion = r.json()
    r = await http.post(
        f"{base}/exceptions",
        json={
            "rule_id": "r",
            "justification": "victim's own risk",
            "expires_at": "2099-01-01T00:00:00Z",
        },
        headers=admin,
    )
    assert r.status_code == 422, r.text  # beyond the default 90 days
    r = await http.post(
        f"{base}/exceptions",
        json={"rule_id": "r", "justification": "victim's own risk", "expires_at": _in_days(10)},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return {
        "environment": "dev",
        "version": 1,
        "promotion_id": promotion["id"],
        "request_id": promotion["approval_request_id"],
        "decision_id": promotion["gate"]["decision_id"],
        "exception_id": r.json()["id"],
        "position": r.json()["position"],
    }


def _in_days(days: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def victim_audit(stack: Stack, org: str) -> list[int]:
    r = await stack.http.get("/v1/audit", params={"org": org, "limit": 1000}, headers=stack.admin)
    return [e["position"] for e in r.json()["items"]]


async def test_every_route_refuses_another_orgs_admin_and_leaves_no_trace(stack: Stack):
    ids = await victim_resources(stack)
    attacker, _, _ = await make_org_and_project(stack.http, stack.admin)
    intruder = await issue_key(stack.http, stack.admin, attacker, "admin", "auditor")
    before = await victim_audit(stack, ids["org"])
    checked = 0
    for method, template in operations():
        if (method, template) in PUBLIC:
            continue
        path = template.format(**ids)
        params = {"org": ids["org"], "project": ids["project_id"]} if "audit" in path else None
        if template.endswith("/state"):
            params = {"as_of": "1"}
        if template.endswith("/diff"):
            params = {"from": 1, "to": 1}
        r = await stack.http.request(
            method, path, headers=intruder, params=params, json=BODIES.get((method, template))
        )
        expected = {403} if (method, template) in PLATFORM_ONLY else {403, 404}
        if method != "GET" and (method, template) not in BODIES | {("DELETE", template): 1}:
            expected |= {400, 422}  # a route this test has no body for: refused all the same
        if template in {"/v1/whoami", "/v1/scanners"}:
            expected = {200}
        assert r.status_code in expected, (method, template, r.status_code, r.text)
        if "{org}" not in template and params is None:  # the answer never names the victim
            assert ids["org"] not in r.text, (method, template, r.text)
        checked += 1
    assert checked >= 15
    await stack.http.get("/v1/whoami", headers=stack.admin)
    assert await victim_audit(stack, ids["org"]) == before


@pytest.mark.parametrize(
    "command",
    [
        "finding.record",
        "project.create",
        "scan.submit",
        "scan_target.register",
        "scan_job.request",
        "task.claim",
    ],
)
async def test_every_bus_command_on_another_orgs_subject_is_dead_lettered(
    stack: Stack, command: str
):
    ids = await victim_resources(stack)
    attacker, _, _ = await make_org_and_project(stack.http, stack.admin)
    key = await stack.http.post(
        f"/v1/orgs/{attacker}/keys", json={"name": "x", "roles": ["admin"]}, headers=stack.admin
    )
    token = key.json()["token"]
    before = await victim_audit(stack, ids["org"])
    data: dict[str, Any] = {
        "finding.record": {**finding_body(), "project_id": ids["project_id"]},
        "project.create": {"slug": "stolen", "name": "x"},
        "scan_target.register": {**TARGET, "name": "stolen", "project_id": ids["project_id"]},
        "scan_job.request": {"target_id": ids["target_id"]},
        "task.claim": {"task_id": ids["task_id"]},
        "scan.submit": {
            "project_id": ids["project_id"],
            "report": json.loads((samples_dir() / "bandit-pyyaml-3.13.json").read_text())
            if (samples_dir() / "bandit-pyyaml-3.13.json").exists()
            else {"results": [], "errors": [], "generated_at": "x", "metrics": {}},
        },
    }[command]
    aggregate, verb = command.split(".")
    marker = str(uuid.uuid4())
    await publish_command(
        stack.nc,
        stack.subjects.command(ids["org"], aggregate, verb),
        data,
        token,
        command_id=marker,
    )

    msg = await dead_lettered(stack, marker)
    assert msg.headers["Pearl-Dlq-Code"] in {"not-found", "cross-org"}
    await stack.http.get("/v1/whoami", headers=stack.admin)
    assert await victim_audit(stack, ids["org"]) == before
