"""`/ready` tells the truth: a failing projection, relay and projection lag, stuck processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import pytest

from contracts.envelope import event_type
from projections import findings
from services.cli.main import main
from services.projector import Projector
from services.relay import Relay
from services.settings import Settings
from tests.support.helpers import eventually, finding_body, make_org_and_project
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.integration


async def _ready(stack: Stack) -> tuple[int, dict[str, Any]]:
    r = await stack.http.get("/ready")
    return r.status_code, r.json()


def _status_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """`pearl projections status` against the test's own database and subject root."""
    import io
    from contextlib import redirect_stdout

    monkeypatch.setenv("DATABASE_URL", settings.database_url or "")
    monkeypatch.setenv("NATS_URL", settings.nats_url or "")
    monkeypatch.setenv("PEARL_SUBJECT_ROOT", settings.subject_root)
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["projections", "status"])
    return code, out.getvalue()


async def test_a_failing_projection_is_named_by_ready_metrics_and_cli_then_recovers(
    fresh_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    async with running_stack(fresh_settings) as stack:
        _, project, _ = await make_org_and_project(stack.http, stack.admin)

        async def caught_up() -> bool:
            code, body = await _ready(stack)
            return code == 200 and body["projections"]["read_models"]["lag"] == 0

        await eventually(caught_up)

        async def broken(cur: Any, env: Any, batch: Any) -> None:
            await cur.execute("SELECT 1 / 0")  # a real database error inside the batch

        recorded = event_type("finding", "recorded", 2)
        monkeypatch.setitem(findings.PROJECTION.handlers, recorded, broken)
        caplog.set_level(logging.INFO, logger="services.projector")
        r = await stack.http.post(
            f"/v1/projects/{project}/findings", json=finding_body(), headers=stack.admin
        )
        assert r.status_code == 201, r.text
        position = r.json()["position"]

        async def failing() -> dict[str, Any] | None:
            code, body = await _ready(stack)
            failure = body["projections"]["read_models"]["failure"]
            return body if code == 503 and failure and failure["attempts"] >= 3 else None

        body = await eventually(failing, timeout=30)
        failure = body["projections"]["read_models"]["failure"]
        assert failure["projection"] == "findings"
        assert failure["position"] == position
        assert "DivisionByZero" in failure["error"]
        assert (
            f"findings (read_models) failed at position {position}"
            in (body["checks"]["projections"])
        )
        assert body["checks"]["postgres"] == body["checks"]["nats"] == "ok"
        failed_logs = [r for r in caplog.records if r.getMessage() == "projection failed"]
        assert len(failed_logs) == 1, "one log line per distinct failure, not per retry"
        assert failed_logs[0].levelno == logging.ERROR
        assert failed_logs[0].position == position  # type: ignore[attr-defined]

        metrics = (await stack.http.get("/metrics")).text
        assert 'pearl_projection_failing{checkpoint="read_models",projection="findings"} 1.0' in (
            metrics
        )
        assert (
            f'pearl_projection_failure_position{{checkpoint="read_models",projection="findings"}}'
            f" {float(position)}" in metrics
        )
        assert "pearl_ready 0.0" in metrics

        code, out = await asyncio.to_thread(_status_cli, fresh_settings, monkeypatch)
        assert code == 1
        assert re.search(r"read_models\s+checkpoint \d+\s+lag [1-9]\d*", out), out
        assert f"FAILED in findings at position {position}" in out
        assert "DivisionByZero" in out
        assert re.search(r"store head \d+", out), out

        # the cause removed, the redelivered batch applies and the failure is cleared
        monkeypatch.undo()
        await eventually(caught_up, timeout=30)
        code, body = await _ready(stack)
        assert body["projections"]["read_models"]["failure"] is None
        assert "pearl_projection_failing{" not in (await stack.http.get("/metrics")).text
        code, out = await asyncio.to_thread(_status_cli, fresh_settings, monkeypatch)
        assert code == 0 and "FAILED" not in out, out
        r = await stack.http.get(
            f"/v1/projects/{project}/findings",
            params={"min_position": position},
            headers=stack.admin,
        )
        assert r.status_code == 200 and len(r.json()["items"]) == 1


async def test_ready_reports_relay_and_projection_lag_and_stuck_processes(
    fresh_settings: Settings,
):
    settings = fresh_settings.model_copy(
        update={"ready_max_relay_lag": 2, "ready_max_projection_lag": 2, "ready_stuck_seconds": 1}
    )
    async with running_stack(settings, workers=False) as stack:  # no relay, no projector
        for _ in range(2):
            await make_org_and_project(stack.http, stack.admin)  # 4 events, 2 behind each limit
        code, body = await _ready(stack)
        head = body["head"]
        assert head >= 4
        assert body["relay"]["lag"] == head and body["projections"]["read_models"]["lag"] == head
        assert code == 503
        assert body["checks"]["relay"].startswith(f"behind: {head} events")
        assert body["checks"]["projections"].startswith(f"behind: read_models is {head} events")

        stop = asyncio.Event()
        database_url = settings.database_url or ""
        relay = Relay(stack.app, stack.nc.jetstream(), stack.subjects, database_url)
        projector = Projector(stack.nc.jetstream(), stack.subjects, database_url)
        tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(projector.run(stop))]
        try:

            async def ready() -> bool:
                code, body = await _ready(stack)
                return code == 200 and body["relay"]["lag"] == 0

            await eventually(ready)
            stop.set()
            await asyncio.gather(*tasks)
            # one event behind (within the lag limits), and nothing moves: stuck after 1 s
            await make_org_and_project(stack.http, stack.admin)

            async def stuck() -> dict[str, Any] | None:
                code, body = await _ready(stack)
                return body if code == 503 else None

            body = await eventually(stuck, timeout=10)
            assert body["checks"]["relay"].startswith("stuck: 2 events behind")
            assert body["checks"]["projections"].startswith("stuck: read_models is 2 events")
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await task
