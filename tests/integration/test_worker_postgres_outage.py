"""Commands that arrive while PostgreSQL is down are applied once it is back — retried in
place, not burnt through their deliveries into the dead-letter stream."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import nats
import psycopg
import pytest

from contracts.commands import CreateOrg, CreateProject
from services.bus import delete_streams
from services.embedded import EmbeddedPostgres, find_free_port
from services.runtime import build_app, migrate, subjects_of
from services.settings import Settings
from tests.support.helpers import eventually
from tests.support.infra import Servers, unique_name
from tests.support.processes import PearlProcess

pytestmark = pytest.mark.integration
COMMANDS = 40
OUTAGE_S = 12.0  # longer than every delivery's nak delays added up


@pytest.fixture
def pg_home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pearl-pg-outage-"))  # not pytest's basetemp
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_commands_sent_while_postgres_is_down_are_applied_when_it_returns(
    infra: Servers, pg_home: Path, tmp_path: Path
):
    pg = EmbeddedPostgres(pg_home, port=find_free_port())
    database_url = await asyncio.to_thread(pg.start)
    settings = Settings(
        nats_url=infra.nats, database_url=database_url, subject_root=unique_name("o")
    )
    subjects = subjects_of(settings)
    worker = None
    nc = await nats.connect(infra.nats)
    try:
        await migrate(settings)
        app = await asyncio.to_thread(build_app, settings)
        token = app.bootstrap_admin_key()
        admin = app.authenticate(token)
        app.create_org(admin, CreateOrg(slug="acme", name="Acme"))
        project = app.create_project(admin, "acme", CreateProject(slug="p", name="P"))
        UUID(project.ids["id"])
        app.close()
        worker = PearlProcess("worker", settings, tmp_path).start()
        ids = [str(uuid.uuid4()) for _ in range(COMMANDS)]

        pid = pg.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        js = nc.jetstream()
        for i, cid in enumerate(ids):
            body = {
                "id": cid,
                "data": {
                    "project_id": project.ids["id"],
                    "tool": "bus",
                    "rule_id": "r",
                    "title": f"t{i}",
                    "severity": "low",
                    "fingerprint": f"outage-{i:06d}",
                },
            }
            await js.publish(
                subjects.command("acme", "finding", "record"),
                json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {token}"},
            )
        await asyncio.sleep(OUTAGE_S)  # the outage itself: nothing to poll for

        async def dead() -> bool:
            return pg.exit_code is not None

        await eventually(dead, timeout=10)
        await asyncio.to_thread(pg.restart)
        back = time.monotonic()

        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:

            async def all_applied() -> bool:
                cur = await conn.execute(
                    "SELECT count(*) FROM pearl_idempotency WHERE key = ANY(%s)",
                    ([f"cmd:{c}" for c in ids],),
                )
                row = await cur.fetchone()
                return row is not None and row[0] == COMMANDS

            await eventually(all_applied, timeout=60, interval=0.2)
        applied_s = time.monotonic() - back
        info = await js.stream_info(subjects.dlq_stream)
        assert info.state.messages == 0
        print(
            f"\n{COMMANDS} commands sent during a {OUTAGE_S:.0f}s outage applied {applied_s:.2f}s "
            "after PostgreSQL returned"
        )
        assert applied_s < 10.0
    finally:
        if worker is not None:
            worker.stop()
        await delete_streams(nc.jetstream(), subjects)
        await nc.close()
        await asyncio.to_thread(pg.stop)
