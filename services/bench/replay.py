"""`pearl bench replay`: rebuild, audit verification and time travel over a large store."""

from __future__ import annotations

import asyncio
import os
import platform
import time
import uuid
from typing import Any
from urllib.parse import urlparse
from uuid import UUID

import psycopg
from psycopg import sql

from contracts.commands import CreateOrg, CreateProject
from domain.finding import Finding
from domain.pearl_app import PearlApp
from services import audit_cli
from services.bench import ceilings
from services.rebuild import rebuild_read_models
from services.runtime import migrate
from services.settings import Settings, event_store_env


async def drop_streams(nats_url: str, root: str) -> None:
    """Remove a benchmark's streams and report bucket from a shared NATS server."""
    from contracts.subjects import Subjects
    from services.bus import connect, delete_streams

    nc = await connect(nats_url, "pearl-bench")
    try:
        await delete_streams(nc.jetstream(), Subjects(root=root))
    finally:
        await nc.close()


def _fill(app: PearlApp, events: int, per_save: int = 500) -> tuple[str, UUID]:
    """`events` findings in batched saves (the fastest way the event store takes them)."""
    admin = app.authenticate(app.bootstrap_admin_key("bench"))
    org = f"replay-{uuid.uuid4().hex[:6]}"
    app.create_org(admin, CreateOrg(slug=org, name="Replay"))
    project = UUID(app.create_project(admin, org, CreateProject(slug="p", name="P")).ids["id"])
    now = app.now()
    batch: list[Any] = []
    for i in range(events):
        batch.append(
            Finding(
                org=org,
                project_id=str(project),
                fingerprint=f"replay-{i:09d}",
                tool="bench",
                rule_id=f"r{i % 50}",
                title="t",
                severity="low",
                details={"path": f"f{i % 999}.py"},
                scan_id=None,
                seen_at=now,
                sla_due=None,
                sla_days=None,
                actor="bench",
            )
        )
        if len(batch) == per_save:
            app.save(*batch)
            batch.clear()
    if batch:
        app.save(*batch)
    return org, project


def run(events: int = 1_000_000) -> dict[str, Any]:
    admin_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    nats_url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    dbname = f"pearl_replay_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    url = urlparse(admin_url)._replace(path=f"/{dbname}").geturl()
    settings = Settings(
        database_url=url, nats_url=nats_url, subject_root=f"replay{uuid.uuid4().hex[:6]}"
    )
    try:
        asyncio.run(migrate(settings))
        app = PearlApp(env=event_store_env(url, 2, create_tables=False))
        start = time.perf_counter()
        org, project = _fill(app, events)
        fill_s = time.perf_counter() - start
        start = time.perf_counter()
        count = asyncio.run(rebuild_read_models(settings))
        rebuild_s = time.perf_counter() - start
        start = time.perf_counter()
        checked, bad = audit_cli.verify_store(app, url, org)
        verify_s = time.perf_counter() - start
        ids = [
            UUID(str(r[0]))
            for r in psycopg.connect(url)
            .execute("SELECT id FROM finding_view LIMIT 1000")
            .fetchall()
        ]
        admin = app.authenticate(app.bootstrap_admin_key("bench-read"))
        latencies = []
        for position in (count // 4, count // 2, count):
            start = time.perf_counter()
            app.project_as_of(admin, project, ids, position)
            latencies.append(time.perf_counter() - start)
        app.close()
        copy_rate = ceilings.postgres_copy_rate(url)
        es_rate = ceilings.event_store_batch_rate(event_store_env(url, 2, create_tables=False))
    finally:
        asyncio.run(drop_streams(nats_url, settings.subject_root))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
    rebuild_rate, verify_rate = count / rebuild_s, checked / verify_s
    return {
        "benchmark": "replay",
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "events": count,
        "fill_events_per_s": round(events / fill_s),
        "rebuild_s": round(rebuild_s, 1),
        "rebuild_events_per_s": round(rebuild_rate),
        "verify_s": round(verify_s, 1),
        "verify_entries_per_s": round(verify_rate),
        "verify_intact": bad is None,
        "time_travel_1000_findings_ms": [round(x * 1000, 1) for x in latencies],
        "ceilings": {
            "postgres_copy_rows_per_s": round(copy_rate),
            "event_store_batched_events_per_s": round(es_rate),
        },
        "ratios": {
            # a rebuild writes three rows an event (scope, finding, audit entry)
            "rebuild_rows_per_s_vs_postgres_copy": round(3 * rebuild_rate / copy_rate, 3),
            "rebuild_events_per_s_vs_event_store_batched": round(rebuild_rate / es_rate, 3),
        },
        "targets": {
            "rebuild_20k_per_s": count / rebuild_s >= 20_000,
            "verify_100k_per_s": checked / verify_s >= 100_000,
        },
    }
