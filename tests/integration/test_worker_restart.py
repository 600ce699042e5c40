"""Killing the command worker mid-stream loses no command and applies none twice."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from uuid import UUID

import nats
import psycopg
import pytest

from contracts.commands import CreateOrg, CreateProject
from services.runtime import build_app, subjects_of
from services.settings import Settings
from tests.support.helpers import eventually
from tests.support.processes import PearlProcess

pytestmark = pytest.mark.integration
COMMANDS = 600


async def test_sigkill_worker_mid_stream_applies_every_command_exactly_once(
    fresh_settings: Settings, tmp_path: Path
):
    settings = fresh_settings
    app = await asyncio.to_thread(build_app, settings)
    token = app.bootstrap_admin_key()
    admin = app.authenticate(token)
    app.create_org(admin, CreateOrg(slug="acme", name="Acme"))
    project = UUID(app.create_project(admin, "acme", CreateProject(slug="p", name="P")).ids["id"])
    subject = subjects_of(settings).command("acme", "finding", "record")
    processes = [
        PearlProcess(name, settings, tmp_path).start() for name in ("relay", "projector", "worker")
    ]
    worker = processes[2]
    nc = await nats.connect(settings.nats_url or "")
    try:
        js = nc.jetstream()
        for i in range(COMMANDS):
            body = {
                "id": str(uuid.uuid4()),
                "data": {
                    "project_id": str(project),
                    "tool": "bus",
                    "rule_id": f"r{i % 7}",
                    "title": f"t{i}",
                    "severity": "low",
                    "fingerprint": f"bus-{i:06d}",
                },
            }
            # every command is published twice, as an at-least-once producer would
            for _ in range(2):
                await js.publish(
                    subject, json.dumps(body).encode(), headers={"Authorization": f"Bearer {token}"}
                )
            if i in (150, 400):
                worker.kill()
                worker.start()
        url = settings.database_url or ""
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for _ in range(900):
                cur = await conn.execute("SELECT count(*) FROM finding_view")
                if (await cur.fetchone())[0] >= COMMANDS:
                    break
                await asyncio.sleep(0.1)
            cur = await conn.execute(
                "SELECT count(*), count(DISTINCT fingerprint), max(version) FROM finding_view"
            )
            assert await cur.fetchone() == (COMMANDS, COMMANDS, 1)
            cur = await conn.execute(
                "SELECT count(*) FROM audit_log WHERE type LIKE 'pearl.finding.%'"
            )
            assert (await cur.fetchone())[0] == COMMANDS
    finally:
        await nc.close()
        for process in processes:
            process.stop()
        app.close()


async def test_commands_in_flight_when_the_worker_is_killed_apply_within_10s_of_its_restart(
    fresh_settings: Settings, tmp_path: Path
):
    """A short ack wait (the worker heartbeats in-progress while it works) means commands a
    killed worker had fetched come back at once, not after a minute."""
    import time

    from services.bus import worker_consumer

    settings = fresh_settings
    subjects = subjects_of(settings)
    app = await asyncio.to_thread(build_app, settings)
    token = app.bootstrap_admin_key()
    admin = app.authenticate(token)
    app.create_org(admin, CreateOrg(slug="acme", name="Acme"))
    project = UUID(app.create_project(admin, "acme", CreateProject(slug="p", name="P")).ids["id"])
    subject = subjects.command("acme", "finding", "record")
    total = 300
    ids = [str(uuid.uuid4()) for _ in range(total)]
    worker = PearlProcess("worker", settings, tmp_path).start()
    nc = await nats.connect(settings.nats_url or "")
    url = settings.database_url or ""
    try:
        js = nc.jetstream()
        for i, cid in enumerate(ids):
            body = {
                "id": cid,
                "data": {
                    "project_id": str(project),
                    "tool": "bus",
                    "rule_id": "r",
                    "title": f"t{i}",
                    "severity": "low",
                    "fingerprint": f"inflight-{i:06d}",
                },
            }
            await js.publish(
                subject, json.dumps(body).encode(), headers={"Authorization": f"Bearer {token}"}
            )
        durable = worker_consumer(subjects).durable_name or ""
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:

            async def applied() -> int:
                cur = await conn.execute(
                    "SELECT count(*) FROM pearl_idempotency WHERE key = ANY(%s)",
                    ([f"cmd:{c}" for c in ids],),
                )
                row = await cur.fetchone()
                return int(row[0]) if row else 0

            async def busy_mid_stream() -> bool:
                info = await js.consumer_info(subjects.commands_stream, durable)
                return info.num_ack_pending > 0 and await applied() >= 20

            await eventually(busy_mid_stream, timeout=60, interval=0.01)
            worker.kill()
            in_flight = (await js.consumer_info(subjects.commands_stream, durable)).num_ack_pending
            done_at_kill = await applied()
            restarted = time.monotonic()
            worker.start()

            async def all_applied() -> bool:
                return await applied() == total

            await eventually(all_applied, timeout=60, interval=0.1)
            recovery_s = time.monotonic() - restarted
        assert in_flight > 0
        print(
            f"\nworker killed with {in_flight} commands in flight ({done_at_kill}/{total} "
            f"applied); all applied {recovery_s:.2f}s after the restart"
        )
        assert recovery_s < 10.0
    finally:
        await nc.close()
        worker.stop()
        app.close()
