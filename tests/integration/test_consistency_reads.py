"""Read-your-writes and the audit chain tell the truth about where the store is."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from services.projector import Projector
from services.relay import Relay
from services.settings import Settings
from tests.support.helpers import eventually, finding_body, make_org_and_project
from tests.support.processes import process_env
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.integration
BEYOND = "urn:pearl:problem:position-beyond-head"


async def test_min_position_beyond_the_store_head_is_refused_at_once_on_every_read(stack: Stack):
    org, project, position = await make_org_and_project(stack.http, stack.admin)
    doc = (await stack.http.get("/schema/openapi.json")).json()
    routes = [
        path
        for path, ops in doc["paths"].items()
        if "get" in ops
        and any(p.get("name") == "min_position" for p in ops["get"].get("parameters", []))
    ]
    assert len(routes) > 20
    head = await asyncio.to_thread(stack.app.recorder.max_notification_id)
    for path in routes:
        names = set(re.findall(r"{(\w+)}", path))
        url = path.replace("{org}", org).replace("{project_id}", project)
        url = re.sub(r"{\w+}", str(uuid.uuid4()), url)
        t0 = time.monotonic()
        r = await stack.http.get(
            url, params={"min_position": head + 1_000_000}, headers=stack.admin
        )
        elapsed = time.monotonic() - t0
        assert elapsed < 2.0, (path, elapsed)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), path
        if names <= {"org", "project_id"}:  # the addressed thing exists: only the position is off
            assert r.status_code == 422, (path, r.text)
            assert r.json()["type"] == BEYOND, (path, r.text)
    # a position a write returned is still waited for and answered
    r = await stack.http.get(
        f"/v1/projects/{project}", params={"min_position": position}, headers=stack.admin
    )
    assert r.status_code == 200


def _verify(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "verify", *args],
        env=process_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_audit_verify_says_how_far_the_chain_is_behind_the_store(fresh_settings: Settings):
    async with running_stack(fresh_settings, workers=False) as stack:
        url = fresh_settings.database_url or ""
        stop = asyncio.Event()

        def start() -> list[asyncio.Task[Any]]:
            relay = Relay(stack.app, stack.nc.jetstream(), stack.subjects, url)
            projector = Projector(stack.nc.jetstream(), stack.subjects, url)
            return [asyncio.create_task(relay.run(stop)), asyncio.create_task(projector.run(stop))]

        tasks = start()
        try:
            _, project, _ = await make_org_and_project(stack.http, stack.admin)

            async def caught_up() -> bool:
                body = (await stack.http.get("/ready")).json()
                return body["projections"]["read_models"]["lag"] == 0

            await eventually(caught_up)
            ok = await asyncio.to_thread(_verify, fresh_settings, "--wait", "0")
            assert ok.returncode == 0 and "intact" in ok.stdout, ok.stdout + ok.stderr

            stop.set()
            await asyncio.gather(*tasks)
            before = await asyncio.to_thread(stack.app.recorder.max_notification_id)
            for i in range(3):
                r = await stack.http.post(
                    f"/v1/projects/{project}/findings",
                    json=finding_body(rule_id=f"b{i}"),
                    headers=stack.admin,
                )
                assert r.status_code == 201, r.text
            head = await asyncio.to_thread(stack.app.recorder.max_notification_id)
            behind = await asyncio.to_thread(_verify, fresh_settings, "--wait", "0.5")
            assert behind.returncode == 3, behind.stdout + behind.stderr
            assert "intact" not in behind.stdout
            assert f"BEHIND the event store by {head - before} events" in behind.stdout
            assert f"positions {before + 1}..{head} are not chained yet" in behind.stdout

            stop.clear()
            tasks = start()  # the projector runs again: verify waits for it and passes
            again = await asyncio.to_thread(_verify, fresh_settings)
            assert again.returncode == 0 and "intact" in again.stdout, again.stdout
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await task
