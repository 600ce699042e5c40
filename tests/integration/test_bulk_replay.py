"""The bulk replay paths give what the live paths give: a rebuild COPYs rows into tables whose
indexes it dropped (and builds them again), audit verification splits the store into ranges
checked by processes of their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
import psycopg
import pytest
from psycopg.types.json import set_json_dumps

from contracts.commands import CreateOrg, CreateProject, RecordFinding
from domain.finding import Finding
from domain.pearl_app import PearlApp
from projections.rebuild import rebuild, rebuild_some
from projections.runner import Item, all_tables, apply_batch
from services.audit_verify import Job, verify
from services.event_log import EventLog
from services.runtime import build_app
from services.settings import Settings

pytestmark = pytest.mark.integration
CHECKSUM = "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t"
INDEXES = "SELECT string_agg(indexdef, ';' ORDER BY indexdef) FROM pg_indexes WHERE tablename = %s"


@dataclass
class Store:
    app: PearlApp
    url: str
    org: str
    events: int


def _finding(org: str, project: UUID, n: int, now: str) -> Finding:
    return Finding(
        org=org,
        project_id=str(project),
        fingerprint=f"bulk-{n:05d}",
        tool="bench",
        rule_id=f"r{n % 7}",
        title=f"finding {n}",
        severity="low",
        details={"path": f"f{n}.py", "score": n / 4},
        scan_id=None,
        seen_at=now,
        sla_due=None,
        sla_days=None,
        actor="bench",
    )


def _story(app: PearlApp) -> str:
    """Findings one by one (seen again, triaged), then a long run of new ones, then updates."""
    admin = app.authenticate(app.bootstrap_admin_key())
    org = "bulk"
    app.create_org(admin, CreateOrg(slug=org, name="Bulk"))
    project = UUID(app.create_project(admin, org, CreateProject(slug="p", name="P")).ids["id"])
    ids = []
    for i in range(60):
        n = i - 3 if i % 5 == 4 else i
        cmd = RecordFinding(
            tool="t", rule_id="r", title=f"x{n}", severity="high", fingerprint=f"{n}"
        )
        ids.append(UUID(app.record_finding(admin, project, cmd).ids["id"]))
        if i % 7 == 6:
            app.triage_finding(admin, ids[-1], "false_positive", "not reachable")
    app.save(*[_finding(org, project, n, app.now()) for n in range(150)])
    for n in range(0, 150, 9):
        cmd = RecordFinding(
            tool="bench", rule_id="r", title="t", severity="low", fingerprint=f"bulk-{n:05d}"
        )
        app.record_finding(admin, project, cmd)
    return org


@pytest.fixture
async def store(fresh_settings: Settings) -> AsyncIterator[Store]:
    app = await asyncio.to_thread(build_app, fresh_settings)
    org = await asyncio.to_thread(_story, app)
    events = app.recorder.max_notification_id() or 0
    try:
        yield Store(app, fresh_settings.database_url or "", org, events)
    finally:
        app.close()


async def _snapshot(url: str) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        out = {}
        for table in [*all_tables(), "projection_checkpoint"]:
            rows = await (await conn.execute(CHECKSUM.format(table))).fetchone()
            indexes = await (await conn.execute(INDEXES, (table,))).fetchone()
            out[table] = (rows, indexes)
        return out


async def _project_live(store: Store, batch: int = 25) -> None:
    """The live projector's path: `apply_batch`, event by event, a few at a time."""
    log = EventLog(store.app)
    async with await psycopg.AsyncConnection.connect(store.url) as conn:
        after = 0
        while envelopes := log.read(after, batch):
            await apply_batch(conn, [Item(None, env) for env in envelopes])
            after = envelopes[-1].position


async def _rebuild(store: Store, names: list[str] | None = None) -> int:
    read = EventLog(store.app).read
    async with await psycopg.AsyncConnection.connect(store.url) as conn:
        set_json_dumps(msgspec.json.encode, context=conn)
        if names:
            return await rebuild_some(conn, names, read, batch_size=37)
        return await rebuild(conn, read, batch_size=37)


async def test_bulk_rebuild_gives_the_live_rows_and_indexes_when_inserts_and_updates_mix(
    store: Store,
):
    await _project_live(store)
    live = await _snapshot(store.url)
    assert live["finding_view"][0] != (None,)

    assert await _rebuild(store) == store.events
    assert await _snapshot(store.url) == live

    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as conn:
        await conn.execute("DELETE FROM finding_view WHERE fingerprint LIKE 'bulk-%'")
        await conn.execute("DELETE FROM audit_log WHERE position > 100")
    await _rebuild(store, ["findings", "audit"])
    assert await _snapshot(store.url) == live


def _verify(store: Store, workers: int, org: str | None = None) -> tuple[int, int | None]:
    job = Job(store.url, ("public", "pearl_events"), org, None, store.events)
    return verify(job, dict, store.app.mapper, workers)


def _tamper(store: Store, statement: str, *params: Any) -> None:
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute(statement, params)


async def test_ranged_verification_answers_as_one_pass_when_entries_are_altered_or_removed(
    store: Store,
):
    await _project_live(store)
    intact = await asyncio.to_thread(_verify, store, 1)
    assert intact == (store.events, None)
    assert await asyncio.to_thread(_verify, store, 3) == intact
    assert (await asyncio.to_thread(_verify, store, 3, store.org))[1] is None

    third = store.events // 3
    cases = [
        (
            'UPDATE audit_log SET data = data || \'{"title": "forged"}\' WHERE position = %s',
            2 * third + 5,
        ),
        ("DELETE FROM audit_log WHERE position = %s", third + 1),
        ("DELETE FROM audit_log WHERE position = %s", third),
        ("UPDATE audit_log SET seq = seq + 1000 WHERE position = %s", 2 * third + 1),
    ]
    for statement, position in cases:
        _tamper(store, statement, position)
        one_pass = await asyncio.to_thread(_verify, store, 1)
        assert one_pass[1] == position
        assert await asyncio.to_thread(_verify, store, 3) == one_pass
        await _rebuild(store)

    # two entries trade places: their hashes no longer follow from the events
    _tamper(
        store,
        "UPDATE audit_log a SET hash = b.hash FROM audit_log b"
        " WHERE (a.position, b.position) IN ((%s, %s), (%s, %s))",
        third + 3,
        third + 4,
        third + 4,
        third + 3,
    )
    one_pass = await asyncio.to_thread(_verify, store, 1)
    assert one_pass[1] == third + 3
    assert await asyncio.to_thread(_verify, store, 3) == one_pass
