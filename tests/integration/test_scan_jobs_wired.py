"""Scan targets through the wired system: bus commands, the projector's read models, the scheduler.

Skipped until scan targets are wired in (PearlApp inherits ScanTargetCommands, the projection
is in PROJECTIONS, the routes are mounted and the bus routes registered).
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from domain.pearl_app import PearlApp
from domain.targets_app import ScanTargetCommands
from projections import targets as target_projection
from projections.runner import PROJECTIONS
from services.commands import ROUTES as BUS_ROUTES
from services.reports import ReportStore
from services.runtime import read_pool
from services.scan_jobs import ScanJobRunner, ScanScheduler, ScanSettings
from services.scanners_local import installed
from tests.support.helpers import eventually, make_org_and_project, publish_command
from tests.support.stack import Stack

WIRED = (
    issubclass(PearlApp, ScanTargetCommands)
    and target_projection.PROJECTION in PROJECTIONS
    and ("scan_job", "request") in BUS_ROUTES
)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not WIRED, reason="scan targets are not wired in yet"),
]
FAST = ScanSettings(backoff_base_seconds=0.05, grace_seconds=1.0, ack_wait_seconds=5.0)


@pytest.fixture
async def runner(stack: Stack) -> AsyncIterator[ScanJobRunner]:
    reports = ReportStore(stack.nc.jetstream(), stack.subjects)
    job_runner = ScanJobRunner(stack.app, stack.nc.jetstream(), stack.subjects, reports, FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(job_runner.run(stop))
    try:
        yield job_runner
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


async def test_bus_commands_register_a_target_and_run_its_job_when_published(
    stack: Stack, runner: ScanJobRunner, tmp_path: Path
) -> None:
    if "bandit" not in installed(refresh=True):
        pytest.skip("bandit is not installed")
    (tmp_path / "app.py").write_text(textwrap.dedent("import pickle\npickle.loads(b'')\n"))
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    body = {"project_id": project, "name": "app", "kind": "source", "location": str(tmp_path)}
    await publish_command(
        stack.nc,
        stack.subjects.command(org, "scan_target", "register"),
        {**body, "scanners": ["bandit"]},
        stack.admin_token,
    )

    async def registered() -> list[dict[str, Any]]:
        r = await stack.http.get(f"/v1/projects/{project}/targets", headers=stack.admin)
        return r.json()["items"] if r.status_code == 200 else []

    (target,) = await eventually(registered)
    await publish_command(
        stack.nc,
        stack.subjects.command(org, "scan_job", "request"),
        {"target_id": target["id"]},
        stack.admin_token,
    )

    async def succeeded() -> list[dict[str, Any]]:
        r = await stack.http.get(
            f"/v1/projects/{project}/jobs", params={"status": "succeeded"}, headers=stack.admin
        )
        return r.json()["items"] if r.status_code == 200 else []

    (job,) = await eventually(succeeded, timeout=60)
    assert job["counts"]["new"] == 2 and job["attempt"] == 1
    r = await stack.http.get(f"/v1/targets/{target['id']}", headers=stack.admin)
    assert r.json()["last_job_status"] == "succeeded"


async def test_scheduler_requests_each_slot_once_when_it_ticks_again(stack: Stack) -> None:
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    body = {"name": "nightly", "kind": "iac", "location": "/srv/iac", "scanners": ["checkov"]}
    r = await stack.http.post(
        f"/v1/projects/{project}/targets", json={**body, "schedule": "1d"}, headers=stack.admin
    )
    assert r.status_code == 201, r.text
    await stack.http.get(
        f"/v1/targets/{r.json()['id']}",
        params={"min_position": r.json()["position"]},
        headers=stack.admin,
    )
    _, database_url = stack.settings.require_urls()
    pool = read_pool(database_url, 2)
    await pool.open()
    try:
        scheduler = ScanScheduler(stack.app, pool, FAST)
        first = await scheduler.tick()
        again = await scheduler.tick()
    finally:
        await pool.close()

    assert first >= 1 and again == 0
    r = await stack.http.get(
        f"/v1/projects/{project}/jobs",
        params={"min_position": stack.app.recorder.max_notification_id()},
        headers=stack.admin,
    )
    assert [(j["trigger"], j["scanner"]) for j in r.json()["items"]] == [("schedule", "checkov")]
