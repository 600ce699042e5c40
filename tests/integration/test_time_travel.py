"""Time travel: a project's findings as they were at a position or a time, from the store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

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


async def test_state_as_of_shows_findings_before_a_fix_and_a_triage(stack: Stack):
    _, project, created_at = await make_org_and_project(stack.http, stack.admin)
    scans = f"/v1/projects/{project}/scans"
    first = await stack.http.post(
        scans,
        content=sample("semgrep-tornado-4.5.json"),
        params={"target": "t"},
        headers=stack.admin,
    )
    await asyncio.sleep(0.05)
    between = datetime.now(UTC).isoformat()
    await asyncio.sleep(0.05)
    second = await stack.http.post(
        scans,
        content=sample("semgrep-tornado-5.0.json"),
        params={"target": "t"},
        headers=stack.admin,
    )
    fixed = second.json()["counts"]["fixed"]
    url = f"/v1/projects/{project}/state"
    await stack.http.get(
        url.replace("/state", ""),
        params={"min_position": second.json()["position"]},
        headers=stack.admin,
    )

    then = await stack.http.get(
        url, params={"as_of": str(first.json()["position"])}, headers=stack.admin
    )
    assert then.status_code == 200, then.text
    assert then.json()["summary"] == {"open": first.json()["counts"]["new"]}
    by_time = await stack.http.get(url, params={"as_of": between}, headers=stack.admin)
    assert by_time.json()["as_of_position"] == first.json()["position"]
    assert by_time.json()["findings"] == then.json()["findings"]
    now = await stack.http.get(
        url, params={"as_of": str(second.json()["position"])}, headers=stack.admin
    )
    assert now.json()["summary"]["fixed"] == fixed
    live = await stack.http.get(
        f"/v1/projects/{project}/findings",
        headers=stack.admin,
        params={"status": "fixed", "limit": 1000},
    )
    assert {f["id"] for f in live.json()["items"]} == {
        f["id"] for f in now.json()["findings"] if f["status"] == "fixed"
    }
    before = await stack.http.get(url, params={"as_of": str(created_at - 1)}, headers=stack.admin)
    assert before.status_code == 404
    bad = await stack.http.get(url, params={"as_of": "yesterday"}, headers=stack.admin)
    assert bad.status_code == 422
