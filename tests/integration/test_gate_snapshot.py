"""The gate snapshot reads open findings in bulk, spelled by SQL, and keeps them between
evaluations: whatever the path, the facts are those `finding_fact` makes of the rows."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from domain.gate.facts import finding_fact
from domain.gate.inputs import FindingFact
from projections.gate_snapshot import FINDING_ROWS, OpenFindings, read_snapshot
from projections.queries import Pool
from services.runtime import read_pool
from tests.conftest import provisioned
from tests.support.infra import Servers

pytestmark = pytest.mark.integration

ORG = "snap"
PROJECT = str(uuid.uuid4())
NOW = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
async def db(infra: Servers) -> AsyncIterator[tuple[str, Pool]]:
    async with provisioned(infra) as settings:
        url = settings.database_url or ""
        pool = read_pool(url, 2)
        await pool.open()
        try:
            yield url, pool
        finally:
            await pool.close()


async def _write(url: str, sql: str, *params: Any) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql, params)


async def _finding(url: str, position: int, *, status: str = "open", **row: Any) -> str:
    """A finding_view row as the projector writes it (`position`: the event that wrote it)."""
    fid = row.pop("id", str(uuid.uuid4()))
    values = {
        "tool": "semgrep",
        "sources": ["semgrep"],
        "rule_id": "r1",
        "severity": "high",
        "path": "a.py",
        "details": {"cwe": ["CWE-79"]},
        "sla_due": "2024-06-10T12:00:00.25+02:00",
        **row,
    }
    await _write(
        url,
        "INSERT INTO finding_view (id, org, project_id, fingerprint, tool, sources, rule_id,"
        " title, severity, status, path, details, first_seen, last_seen, scan_count, sla_due,"
        " version, position) VALUES (%s, %s, %s, %s, %s, %s, %s, 't', %s, %s, %s, %s,"
        " now(), now(), 1, %s, 1, %s)"
        " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, position = EXCLUDED.position,"
        " sla_due = EXCLUDED.sla_due, version = finding_view.version + 1",
        fid,
        ORG,
        PROJECT,
        fid,
        values["tool"],
        Jsonb(values["sources"]),
        values["rule_id"],
        values["severity"],
        status,
        values["path"],
        Jsonb(values["details"]),
        values["sla_due"],
        position,
    )
    return fid


async def _read(pool: Pool, kept: OpenFindings | None) -> tuple[FindingFact, ...]:
    snap = await read_snapshot(
        pool,
        ORG,
        project_id=PROJECT,
        promotion_id=str(uuid.uuid4()),
        environment="prod",
        from_environment=None,
        commit="c",
        now=NOW,
        findings=kept,
    )
    return snap.findings


async def _row_by_row(url: str) -> tuple[FindingFact, ...]:
    """The reference: every row through `finding_fact`, sorted by id."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(FINDING_ROWS, (PROJECT,))
        facts = [finding_fact(*row) for row in await cur.fetchall()]
    return tuple(sorted(facts, key=lambda f: f.id))


async def test_open_findings_are_spelled_as_finding_fact_spells_them(db: tuple[str, Pool]):
    url, pool = db
    await _finding(url, 1)
    await _finding(url, 2, sla_due=None, path=None, details={})
    await _finding(url, 3, sla_due="2024-06-10T12:00:00Z", sources=["semgrep", "gitleaks"])
    await _finding(url, 4, sla_due="2024-06-10T23:30:00.000001-05:00", details={"cwe": []})
    await _finding(url, 5, status="reopened", severity="critical")
    await _finding(url, 6, status="fixed")

    facts = await _read(pool, None)

    assert facts == await _row_by_row(url)
    assert len(facts) == 5
    assert {f.sla_due for f in facts} >= {
        None,
        "2024-06-10T10:00:00.250000+00:00",
        "2024-06-10T12:00:00+00:00",
        "2024-06-11T04:30:00.000001+00:00",
    }


async def test_kept_open_findings_follow_rows_changed_since(db: tuple[str, Pool]):
    url, pool = db
    kept = OpenFindings()
    first = await _finding(url, 10)
    second = await _finding(url, 11)
    assert await _read(pool, kept) == await _row_by_row(url)

    await _finding(url, 12, id=first, status="fixed")
    await _finding(url, 13, id=second, status="open", sla_due="2025-01-01T00:00:00Z")
    await _finding(url, 14, severity="low")

    changed = await _read(pool, kept)

    assert changed == await _row_by_row(url)
    assert first not in {f.id for f in changed}
    assert await _read(pool, kept) is changed  # nothing changed since: the same facts


async def test_a_cwe_sql_cannot_spell_is_read_row_by_row(db: tuple[str, Pool]):
    url, pool = db
    kept = OpenFindings()
    await _read(pool, kept)
    await _finding(url, 20, details={"cwe": [79, "CWE-89"]})

    facts = await _read(pool, kept)

    assert facts == await _row_by_row(url)
    assert ("79", "CWE-89") in {f.cwe for f in facts}
