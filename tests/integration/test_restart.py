"""Killing the relay and the projector mid-stream loses nothing and doubles nothing."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from pathlib import Path
from uuid import UUID

import nats
import psycopg
import pytest

from contracts.commands import CreateOrg, CreateProject, RecordFinding
from domain.pearl_app import PearlApp
from domain.wire import to_envelope
from projections.audit import verify_chain
from services.rebuild import rebuild_read_models
from services.runtime import build_app, subjects_of
from services.settings import Settings
from tests.support.processes import PearlProcess

pytestmark = pytest.mark.integration
COMMANDS = 2000
CHECKSUM_SQL = "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t"


def run_commands(app: PearlApp, project: UUID, principal, start: int, stop: int) -> None:
    for i in range(start, stop):
        # every fifth command repeats an earlier finding: a `seen_again`, not a new row
        n = i - 3 if i % 5 == 4 else i
        cmd = RecordFinding(
            tool="semgrep",
            rule_id=f"rule-{n % 17}",
            title=f"finding {n}",
            severity="medium",
            path=f"src/m{n}.py",
            line=n,
            fingerprint=f"fp-{n:08d}",
        )
        app.record_finding(principal, project, cmd)


async def stream_positions(settings: Settings) -> list[int]:
    subjects = subjects_of(settings)
    nc = await nats.connect(settings.nats_url or "")
    try:
        js = nc.jetstream()
        info = await js.stream_info(subjects.events_stream)
        positions = []
        for seq in range(1, info.state.last_seq + 1):
            msg = await js.get_msg(subjects.events_stream, seq=seq)
            positions.append(int(msg.headers["Pearl-Position"]))
        return positions
    finally:
        await nc.close()


async def wait_caught_up(database_url: str, target: int, timeout: float = 90.0) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for _ in range(int(timeout / 0.1)):
            cur = await conn.execute("SELECT position FROM projection_checkpoint")
            row = await cur.fetchone()
            if row and row[0] >= target:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"projections did not reach {target}")


async def test_sigkill_relay_and_projector_mid_stream_loses_and_doubles_nothing(
    fresh_settings: Settings, tmp_path: Path
):
    settings = fresh_settings
    app = await asyncio.to_thread(build_app, settings)
    admin = app.authenticate(app.bootstrap_admin_key())
    app.create_org(admin, CreateOrg(slug="restart", name="Restart"))
    project = UUID(
        app.create_project(admin, "restart", CreateProject(slug="p", name="P")).ids["id"]
    )
    relay = PearlProcess("relay", settings, tmp_path).start()
    projector = PearlProcess("projector", settings, tmp_path).start()
    try:
        chunks = list(itertools.pairwise(range(0, COMMANDS + 1, COMMANDS // 8)))
        for index, (start, stop) in enumerate(chunks):
            await asyncio.to_thread(run_commands, app, project, admin, start, stop)
            if index == 1:
                relay.kill()
            if index == 2:
                projector.kill()
                relay.start()
            if index == 4:
                relay.kill()
                projector.kill()
                projector.start()
            if index == 5:
                relay.start()
        last = app.recorder.max_notification_id() or 0
        await wait_caught_up(settings.database_url or "", last)
    finally:
        relay.stop()
        projector.stop()

    stored = [n.id for n in app.recorder.select_notifications(1, last + 10)]
    published = await stream_positions(settings)
    assert published == stored  # every event once, in store order

    distinct = len({f"fp-{(i - 3 if i % 5 == 4 else i):08d}" for i in range(COMMANDS)})
    async with await psycopg.AsyncConnection.connect(settings.database_url or "") as conn:
        cur = await conn.execute("SELECT count(*) FROM finding_view")
        assert (await cur.fetchone())[0] == distinct
        cur = await conn.execute("SELECT count(*), count(DISTINCT position) FROM audit_log")
        assert await cur.fetchone() == (len(stored), len(stored))
        cur = await conn.execute(
            "SELECT count(*) FROM audit_log WHERE type = 'pearl.finding.seen_again.v1'"
        )
        assert (await cur.fetchone())[0] == COMMANDS - distinct
        cur = await conn.execute("SELECT position, org, seq, hash FROM audit_log ORDER BY position")
        audit_rows = await cur.fetchall()
        before = {
            t: await _checksum(conn, t)
            for t in ("finding_view", "audit_log", "project_view", "org_view")
        }

    envelopes = {n.id: n for n in app.recorder.select_notifications(1, last + 10)}
    by_org: dict[str, list] = defaultdict(list)
    for position, org, seq, digest in audit_rows:
        env = to_envelope(app.mapper.to_domain_event(envelopes[position]), position)
        by_org[org].append((env, seq, digest))
    assert all(verify_chain(entries) is None for entries in by_org.values())

    # A rebuild from the event store gives byte-identical read models.
    count = await rebuild_read_models(settings)
    assert count == len(stored)
    async with await psycopg.AsyncConnection.connect(settings.database_url or "") as conn:
        after = {t: await _checksum(conn, t) for t in before}
    assert after == before
    app.close()


async def _checksum(conn: psycopg.AsyncConnection, table: str) -> str:
    cur = await conn.execute(CHECKSUM_SQL.format(table))
    return (await cur.fetchone())[0]
