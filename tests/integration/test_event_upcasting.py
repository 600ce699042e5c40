"""v1 events stored before a v2 existed load, project and replay correctly from PostgreSQL."""

from __future__ import annotations

import asyncio
from uuid import UUID

import psycopg
import pytest

from contracts.commands import CreateOrg, CreateProject
from services import audit_cli
from services.rebuild import rebuild_read_models
from services.runtime import build_app
from services.settings import Settings
from tests.unit.test_event_contracts import _store_v1_recorded

pytestmark = pytest.mark.integration


async def test_v1_finding_projects_and_replays_as_v2_after_a_rebuild(fresh_settings: Settings):
    app = await asyncio.to_thread(build_app, fresh_settings)
    try:
        admin = app.authenticate(app.bootstrap_admin_key())
        app.create_org(admin, CreateOrg(slug="acme", name="Acme"))
        project = UUID(
            app.create_project(admin, "acme", CreateProject(slug="w", name="W")).ids["id"]
        )
        fid = _store_v1_recorded(app, project)

        assert await rebuild_read_models(fresh_settings) == 4
        url = fresh_settings.database_url or ""
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute(
                "SELECT severity, status, sla_due FROM finding_view WHERE id = %s", (fid,)
            )
            severity, status, due = await cur.fetchone()
            cur = await conn.execute(
                "SELECT type, data->>'sla_days' FROM audit_log WHERE aggregate_id = %s", (fid,)
            )
            audit = await cur.fetchall()
        assert (severity, status, due.isoformat()) == ("high", "open", "2026-01-31T00:00:00+00:00")
        assert audit == [("pearl.finding.recorded.v2", "30")]
        checked, bad = await asyncio.to_thread(audit_cli.verify_store, app, url, "acme")
        assert (checked, bad) == (3, None)
    finally:
        app.close()
