"""Trivy and Grype report the same CVE: one finding, its lifecycle, and its VEX export.

The VEX controller is served by a Litestar app built here around the stack's own Application
and a read pool on the stack's database (the shared app does not mount it yet).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.datastructures import State

from services.api.app import on_projection_lag
from services.api.context import ApiContext, ProjectionLag
from services.api.problems import HANDLERS
from services.api.vex import VexController
from services.runtime import read_pool
from tests.support.helpers import issue_key, make_org_and_project, slug
from tests.support.scan_reports import (
    CVE,
    GHSA,
    REQUESTS_PURL,
    URLLIB3_CVE,
    URLLIB3_PURL,
    grype_report,
    trivy_report,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def vex_http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for an app serving VexController against the stack's store and views."""
    _, database_url = stack.settings.require_urls()
    pool = read_pool(database_url, 2)
    await pool.open()
    ctx = ApiContext(settings=stack.settings, pearl=stack.app, pool=pool, nc=stack.nc)
    app = Litestar(
        route_handlers=[VexController],
        state=State({"ctx": ctx}),
        exception_handlers={**HANDLERS, ProjectionLag: on_projection_lag},
        debug=False,
        logging_config=None,
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://vex.test") as http:
            yield http
    finally:
        await pool.close()


async def submit(stack: Stack, project: str, body: bytes, tool: str) -> dict[str, Any]:
    r = await stack.http.post(
        f"/v1/projects/{project}/scans", content=body, params={"tool": tool}, headers=stack.admin
    )
    assert r.status_code == 202, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def findings_of(stack: Stack, project: str, position: int) -> list[dict[str, Any]]:
    r = await stack.http.get(
        f"/v1/projects/{project}/findings",
        params={"min_position": position, "limit": 1000},
        headers=stack.admin,
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def both_tools_scanned(stack: Stack) -> tuple[str, dict[str, Any], int]:
    """A project scanned by Trivy then Grype; its CVE-2023-1234 finding and the last position."""
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    await submit(stack, project, trivy_report(), "trivy")
    grype = await submit(stack, project, grype_report(), "grype")
    items = await findings_of(stack, project, grype["position"])
    shared = [i for i in items if CVE in i["details"]["cve"]]
    assert len(shared) == 1, items
    return project, shared[0], grype["position"]


async def triage(stack: Stack, finding_id: str, status: str, justification: str) -> int:
    r = await stack.http.post(
        f"/v1/findings/{finding_id}/triage",
        json={"status": status, "justification": justification},
        headers=stack.admin,
    )
    assert r.status_code == 200, r.text
    position: int = r.json()["position"]
    return position


async def export(
    http: httpx.AsyncClient, stack: Stack, project: str, fmt: str, position: int
) -> dict[str, Any]:
    r = await http.get(
        f"/v1/projects/{project}/vex",
        params={"format": fmt, "min_position": position},
        headers=stack.admin,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = r.json()
    return doc


def statement_for(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        s for s in doc["statements"] if s["vulnerability"]["name"] == name
    ]
    assert len(found) == 1, doc["statements"]
    return found[0]


async def test_one_finding_lists_both_tools_when_trivy_and_grype_report_the_same_cve(
    stack: Stack,
) -> None:
    _, project, _ = await make_org_and_project(stack.http, stack.admin)

    trivy = await submit(stack, project, trivy_report(), "trivy")
    grype = await submit(stack, project, grype_report(), "grype")

    assert trivy["counts"] == {"new": 2, "seen_again": 0, "reopened": 0, "fixed": 0, "total": 2}
    assert grype["counts"] == {"new": 0, "seen_again": 1, "reopened": 0, "fixed": 0, "total": 1}
    items = await findings_of(stack, project, grype["position"])
    assert len(items) == 2
    shared = next(i for i in items if CVE in i["details"]["cve"])
    assert (shared["tool"], shared["sources"], shared["scan_count"]) == (
        "trivy",
        ["trivy", "grype"],
        2,
    )
    assert shared["details"]["package"] == REQUESTS_PURL
    r = await stack.http.get(f"/v1/findings/{shared['id']}", headers=stack.admin)
    history = r.json()["history"]
    assert [(h["type"], h["data"].get("tool")) for h in history] == [
        ("pearl.finding.recorded.v2", "trivy"),
        ("pearl.finding.seen_again.v1", "grype"),
    ]


async def test_vex_states_not_affected_when_the_shared_finding_is_triaged_not_affected(
    stack: Stack, vex_http: httpx.AsyncClient
) -> None:
    project, finding, _ = await both_tools_scanned(stack)

    position = await triage(stack, finding["id"], "not_affected", "only tests import requests")
    openvex = await export(vex_http, stack, project, "openvex", position)
    bom = await export(vex_http, stack, project, "cyclonedx", position)

    assert openvex["@context"] == "https://openvex.dev/ns/v0.2.0"
    assert openvex["@id"] == f"urn:pearl:vex:{project}"
    assert [s["vulnerability"]["name"] for s in openvex["statements"]] == [CVE, URLLIB3_CVE]
    assert statement_for(openvex, CVE) == {
        "@id": f"urn:uuid:{finding['id']}",
        "vulnerability": {"name": CVE, "aliases": [GHSA]},
        "products": [{"@id": f"urn:uuid:{project}", "subcomponents": [{"@id": REQUESTS_PURL}]}],
        "status": "not_affected",
        "status_notes": "PeaRL status not_affected, reported by grype, trivy",
        "justification": "vulnerable_code_not_in_execute_path",
        "impact_statement": "only tests import requests",
    }
    untriaged = statement_for(openvex, URLLIB3_CVE)
    assert (untriaged["status"], untriaged["action_statement"]) == (
        "affected",
        "update urllib3 to 1.26.18",
    )
    vulns = {v["id"]: v for v in bom["vulnerabilities"]}
    assert vulns[CVE]["analysis"] == {
        "state": "not_affected",
        "justification": "code_not_reachable",
        "detail": "only tests import requests",
    }
    assert vulns[CVE]["affects"] == [{"ref": REQUESTS_PURL}]
    assert vulns[URLLIB3_CVE]["analysis"]["state"] == "in_triage"
    assert [c["purl"] for c in bom["components"]] == [REQUESTS_PURL, URLLIB3_PURL]


async def test_triage_survives_when_one_tool_reports_it_again_and_the_other_drops_it(
    stack: Stack, vex_http: httpx.AsyncClient
) -> None:
    project, finding, _ = await both_tools_scanned(stack)
    await triage(stack, finding["id"], "false_positive", "backported fix in our wheel")

    again = await submit(stack, project, grype_report() + b"\n", "grype")
    dropped = await submit(stack, project, trivy_report(with_requests=False), "trivy")
    openvex = await export(vex_http, stack, project, "openvex", dropped["position"])

    assert again["counts"]["seen_again"] == 1
    assert dropped["counts"]["fixed"] == 0
    r = await stack.http.get(
        f"/v1/findings/{finding['id']}",
        params={"min_position": dropped["position"]},
        headers=stack.admin,
    )
    assert (r.json()["status"], r.json()["scan_count"]) == ("false_positive", 3)
    shared = statement_for(openvex, CVE)
    assert (shared["status"], shared["justification"], shared["impact_statement"]) == (
        "not_affected",
        "vulnerable_code_not_present",
        "false positive: backported fix in our wheel",
    )


async def test_vex_export_is_not_found_when_the_project_belongs_to_another_org(
    stack: Stack, vex_http: httpx.AsyncClient
) -> None:
    project, _, position = await both_tools_scanned(stack)
    other = slug()
    r = await stack.http.post(
        "/v1/orgs", json={"slug": other, "name": "Other"}, headers=stack.admin
    )
    assert r.status_code == 201, r.text
    outsider = await issue_key(stack.http, stack.admin, other, "viewer")

    r = await vex_http.get(
        f"/v1/projects/{project}/vex", params={"min_position": position}, headers=outsider
    )

    assert r.status_code == 404, r.text
    assert r.json()["type"] == "urn:pearl:problem:not-found"
