"""Real scanner reports ingested over HTTP: counts, lifecycle, idempotency, raw report kept."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import samples_dir
from tests.support.helpers import make_org_and_project
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def sample(name: str) -> bytes:
    path = samples_dir() / name
    if not path.exists():
        pytest.skip(f"sample {name} not available")
    return path.read_bytes()


async def submit(stack: Stack, project: str, body: bytes, **params: str):
    return await stack.http.post(
        f"/v1/projects/{project}/scans", content=body, params=params, headers=stack.admin
    )


async def test_real_semgrep_report_is_ingested_and_queryable(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    expected = json.loads(sample("expected.json"))["semgrep-tornado-4.5.json"]
    r = await submit(stack, project, sample("semgrep-tornado-4.5.json"), target="tornado")
    assert r.status_code == 202, r.text
    body = r.json()
    counts = body["counts"]
    assert expected["distinct_rule_path"] <= counts["new"] <= expected["distinct_rule_path_line"]
    assert counts == {
        "new": counts["new"],
        "seen_again": 0,
        "reopened": 0,
        "fixed": 0,
        "total": counts["new"],
    }
    r = await stack.http.get(
        f"/v1/projects/{project}/findings",
        params={"min_position": body["position"], "limit": 1000},
        headers=stack.admin,
    )
    items = r.json()["items"]
    assert len(items) == counts["new"]
    assert {i["path"] for i in items} == set(expected["paths"])
    scan = await stack.http.get(f"/v1/scans/{body['scan_id']}", headers=stack.admin)
    assert scan.json()["digest"] == hashlib.sha256(sample("semgrep-tornado-4.5.json")).hexdigest()


async def test_same_report_again_changes_nothing(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    first = await submit(stack, project, sample("bandit-pyyaml-3.13.json"))
    before = stack.app.recorder.max_notification_id()
    again = await submit(stack, project, sample("bandit-pyyaml-3.13.json"))
    assert again.status_code == 202
    assert again.json()["scan_id"] == first.json()["scan_id"]
    assert again.json()["counts"] == first.json()["counts"]
    assert stack.app.recorder.max_notification_id() == before


async def test_full_scan_fixes_missing_and_reopens_returning_findings(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    old, new = sample("semgrep-tornado-4.5.json"), sample("semgrep-tornado-5.0.json")
    await submit(stack, project, old, target="tornado")
    upgraded = (await submit(stack, project, new, target="tornado")).json()["counts"]
    assert upgraded["fixed"] > 0 and upgraded["new"] > 0 and upgraded["seen_again"] > 0
    back = (await submit(stack, project, old + b"\n", target="tornado")).json()
    assert back["counts"]["reopened"] == upgraded["fixed"]
    r = await stack.http.get(
        f"/v1/projects/{project}/findings",
        params={"min_position": back["position"], "status": "reopened", "limit": 1000},
        headers=stack.admin,
    )
    assert len(r.json()["items"]) == upgraded["fixed"]


async def test_partial_scan_never_fixes_anything(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    await submit(stack, project, sample("semgrep-tornado-4.5.json"))
    partial = await submit(stack, project, sample("semgrep-pyyaml-3.13.json"), full="false")
    assert partial.json()["counts"]["fixed"] == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 422, "invalid-report"),
        (b'{"runs": [', 422, "invalid-report"),
        (b'{"hello": "world"}', 422, "invalid-report"),
        (b'{"version": "2.0.0", "runs": []}', 422, "invalid-report"),
        (b"[" * 10000 + b"]" * 10000, 422, "report-too-complex"),
    ],
    ids=["empty", "truncated", "unknown-format", "sarif-2.0", "deep-nesting"],
)
async def test_bad_report_is_rejected_whole(stack: Stack, body: bytes, status: int, code: str):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    before = stack.app.recorder.max_notification_id()
    r = await submit(stack, project, body)
    assert r.status_code == status, r.text
    assert r.json()["type"] == f"urn:pearl:problem:{code}"
    assert stack.app.recorder.max_notification_id() == before


async def test_report_over_size_limit_is_413(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    limit = stack.settings.max_report_bytes
    stack.settings.max_report_bytes = 1000
    try:
        r = await submit(stack, project, sample("semgrep-tornado-4.5.json"))
    finally:
        stack.settings.max_report_bytes = limit
    assert r.status_code == 413
    assert r.json()["type"] == "urn:pearl:problem:payload-too-large"


async def test_triage_marks_false_positive_with_justification(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    body = (await submit(stack, project, sample("semgrep-pyyaml-3.13.json"))).json()
    r = await stack.http.get(
        f"/v1/projects/{project}/findings",
        params={"min_position": body["position"]},
        headers=stack.admin,
    )
    fid = r.json()["items"][0]["id"]
    r = await stack.http.post(
        f"/v1/findings/{fid}/triage",
        headers=stack.admin,
        json={"status": "false_positive", "justification": "test code"},
    )
    assert r.status_code == 200
    r = await stack.http.get(
        f"/v1/findings/{fid}", params={"min_position": r.json()["position"]}, headers=stack.admin
    )
    assert (r.json()["status"], r.json()["justification"]) == ("false_positive", "test code")
    r = await stack.http.post(
        f"/v1/findings/{fid}/triage",
        headers=stack.admin,
        json={"status": "not_affected", "justification": "again"},
    )
    assert r.status_code == 409


async def test_scan_submitted_on_the_bus_from_object_store_and_inline(stack: Stack):
    from services.reports import ReportStore, spool_bytes
    from tests.support.helpers import eventually, publish_command

    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    raw = sample("bandit-tornado-4.5.json")
    with spool_bytes(raw) as spooled:
        await ReportStore(stack.nc.jetstream(), stack.subjects).put(spooled)
    subject = stack.subjects.command(org, "scan", "submit")
    await publish_command(
        stack.nc,
        subject,
        {"project_id": project, "object": spooled.digest, "target": "tornado"},
        stack.admin_token,
    )
    inline = json.loads(sample("semgrep-pyyaml-3.13.json"))
    await publish_command(
        stack.nc,
        subject,
        {"project_id": project, "report": inline, "target": "pyyaml"},
        stack.admin_token,
    )

    async def scans():
        r = await stack.http.get(f"/v1/projects/{project}/scans", headers=stack.admin)
        items = r.json().get("items", []) if r.status_code == 200 else []
        return items if len(items) == 2 else None

    items = await eventually(scans)
    assert sorted(i["tool"] for i in items) == ["bandit", "semgrep"]
    bandit = next(i for i in items if i["tool"] == "bandit")
    assert bandit["digest"] == hashlib.sha256(raw).hexdigest()
    assert bandit["counts"]["new"] > 0
