"""The machine's raw ceilings, measured in the same run, so PeaRL's figures read as ratios."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import nats
import psycopg
from nats.js.api import StreamConfig

from contracts.commands import CreateOrg, CreateProject
from domain.finding import Finding
from domain.pearl_app import PearlApp


async def jetstream_publish_rate(nats_url: str, count: int = 20_000) -> float:
    """Bare `publish_async` throughput to a scratch stream (messages/s)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    name = f"BENCH_{uuid.uuid4().hex[:8].upper()}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
    payload = b"x" * 600
    try:
        start = time.perf_counter()
        futures = [await js.publish_async(f"{name.lower()}.a", payload) for _ in range(count)]
        await asyncio.gather(*futures)
        return count / (time.perf_counter() - start)
    finally:
        await js.delete_stream(name)
        await nc.close()


def postgres_copy_rate(database_url: str, rows: int = 100_000) -> float:
    """Bare COPY throughput into a temporary table (rows/s)."""
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TEMP TABLE bench_copy (id bigint, org text, data text)")
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bench_copy FROM STDIN") as copy:
            for i in range(rows):
                copy.write_row((i, "org", "x" * 200))
        conn.commit()
        return rows / (time.perf_counter() - start)


def event_store_batch_rate(
    env: dict[str, str], aggregates: int = 5_000, per_save: int = 100
) -> float:
    """The event store's batched save rate (events/s), `per_save` new aggregates per save."""
    app = PearlApp(env=env)
    try:
        admin = app.authenticate(app.bootstrap_admin_key("bench"))
        org = f"bench-{uuid.uuid4().hex[:6]}"
        app.create_org(admin, CreateOrg(slug=org, name="bench"))
        project = app.create_project(admin, org, CreateProject(slug="p", name="p")).ids["id"]
        now = app.now()
        batch: list[Any] = []
        start = time.perf_counter()
        for i in range(aggregates):
            batch.append(
                Finding(
                    org=org,
                    project_id=project,
                    fingerprint=f"bench-{i}",
                    tool="bench",
                    rule_id="r",
                    title="t",
                    severity="low",
                    details={},
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
        app.save(*batch)
        return aggregates / (time.perf_counter() - start)
    finally:
        app.close()
