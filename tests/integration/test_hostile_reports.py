"""Hostile scanner reports over HTTP and NATS: unsafe text kept escaped, shape limits refused.

Whatever a report holds, the projections reach the store head and the audit chain verifies.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from projections import queries
from services import audit_cli
from services.reports import ReportStore, spool_bytes
from tests.conftest import samples_dir
from tests.support.bus import dead_lettered
from tests.support.helpers import eventually, make_org_and_project, publish_command
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

PROBLEM = "urn:pearl:problem:report-too-complex"


def sample(name: str) -> Any:
    path = samples_dir() / name
    if not path.exists():
        pytest.skip(f"sample {name} not available")
    return json.loads(path.read_bytes())


async def caught_up(stack: Stack) -> None:
    """The read models reach the store head, and every org's audit chain verifies."""
    head = stack.app.position

    async def at_head() -> bool:
        return await queries.position(stack.pool) >= head

    await eventually(at_head)
    assert await queries.position(stack.pool) == head
    checked, bad = audit_cli.verify_store(stack.app, stack.settings.database_url or "", None)
    assert bad is None and checked > 0


async def test_finding_with_nul_and_c1_is_stored_escaped_when_a_real_report_carries_them(
    stack: Stack,
) -> None:
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    report = sample("semgrep-pyyaml-3.13.json")
    victim = report["results"][0]
    victim["extra"]["message"] = "eval of\x00 user input\x85 here"
    victim["extra"]["lines"] = "yaml.load(\x00data\x9b)"
    body = json.dumps(report).encode()
    assert b"\\u0000" in body

    r = await stack.http.post(
        f"/v1/projects/{project}/scans", content=body, params={"target": "t"}, headers=stack.admin
    )

    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["counts"]["sanitized"] == 1
    assert answer["counts"]["new"] == len(report["results"])
    assert "\\uXXXX" in answer["warnings"][0]
    findings = await stack.http.get(
        f"/v1/projects/{project}/findings",
        params={"min_position": answer["position"], "limit": 1000},
        headers=stack.admin,
    )
    assert findings.status_code == 200, findings.text
    texts = [json.dumps(item) for item in findings.json()["items"]]
    assert len(texts) == len(report["results"])
    escaped = [text for text in texts if "eval of\\\\u0000 user input\\\\u0085 here" in text]
    assert len(escaped) == 1, texts
    scan = await stack.http.get(f"/v1/scans/{answer['scan_id']}", headers=stack.admin)
    assert scan.json()["counts"]["sanitized"] == 1
    await caught_up(stack)


@pytest.mark.parametrize(
    "body",
    [
        b'{"runs":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"results":[{"check_id":"x","extra":' + b'{"a":' * 300 + b"0" + b"}" * 301 + b"]}",
        json.dumps({"results": [{"check_id": "x", "wide": [0] * 300_000}]}).encode(),
    ],
    ids=["deep-100k", "deep-objects", "wide-item"],
)
async def test_pathological_report_is_refused_with_a_stable_problem_when_submitted_over_http(
    stack: Stack, body: bytes
) -> None:
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    before = stack.app.recorder.max_notification_id()

    r = await stack.http.post(f"/v1/projects/{project}/scans", content=body, headers=stack.admin)

    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == PROBLEM
    assert stack.app.recorder.max_notification_id() == before
    await caught_up(stack)


async def test_pathological_report_is_dead_lettered_with_its_reason_when_sent_on_the_bus(
    stack: Stack,
) -> None:
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    deep = b'{"runs":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    with spool_bytes(deep) as spooled:
        await ReportStore(stack.nc.jetstream(), stack.subjects).put(spooled)
    marker = str(uuid.uuid4())
    await publish_command(
        stack.nc,
        stack.subjects.command(org, "scan", "submit"),
        {"project_id": project, "object": spooled.digest},
        stack.admin_token,
        command_id=marker,
    )

    msg = await dead_lettered(stack, marker)
    assert msg.headers["Pearl-Dlq-Code"] == "report-too-complex"
    assert "deeper than 256 levels" in msg.headers["Pearl-Dlq-Reason"]
    await caught_up(stack)
