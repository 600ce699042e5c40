"""The read-model rows a gate evaluation looks at, read in one consistent snapshot.

One REPEATABLE READ transaction reads the projection checkpoint and every table, so the rows
are exactly the state after the events up to that position: what the decision records as
`as_of_position`, and what a replay from the event store rebuilds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from projections.queries import Pool
from projections.runner import CHECKPOINT, READER_ROLE

FINDINGS = (
    "SELECT id::text, severity, status, tool, sources, rule_id, details->'cwe' AS cwe, path,"
    " sla_due FROM finding_view WHERE project_id = %s AND status IN ('open', 'reopened')"
)
EXCEPTIONS = (
    "SELECT id::text, environment, finding_ids, rule_id, cwe, expires_at, approved_by"
    " FROM exception_view WHERE project_id = %s AND status = 'active'"
    " AND (environment IS NULL OR environment = %s) AND expires_at > %s"
)
SCANS = (
    "SELECT id::text, tool, format, full_scan, commit_sha, submitted_at FROM scan_view"
    " WHERE project_id = %s AND commit_sha = %s"
)
TESTS = (
    "SELECT id::text, suite, passed, failed, skipped, coverage, submitted_at FROM test_run_view"
    " WHERE project_id = %s AND commit_sha = %s"
)
APPROVALS = (
    "SELECT id::text, status, version_digest, requested_by, expires_at, decisions"
    " FROM approval_view WHERE promotion_id = %s"
)
ENVIRONMENT = (
    "SELECT current_digest, live_since, failed_digests FROM environment_view"
    " WHERE project_id = %s AND name = %s"
)
PROFILE = "SELECT profile FROM project_view WHERE id = %s"


@dataclass(frozen=True, slots=True)
class GateSnapshot:
    position: int
    profile: dict[str, Any] | None
    findings: list[tuple[Any, ...]]
    exceptions: list[dict[str, Any]]
    scans: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    approvals: list[dict[str, Any]]
    previous: dict[str, Any] | None


async def read_snapshot(
    pool: Pool,
    org: str,
    *,
    project_id: str,
    promotion_id: str,
    environment: str,
    from_environment: str | None,
    commit: str,
    now: datetime,
) -> GateSnapshot:
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        await cur.execute(f"SET LOCAL ROLE {READER_ROLE}")
        await cur.execute("SELECT set_config('pearl.org', %s, true)", (org,))
        await cur.execute(
            "SELECT position FROM projection_checkpoint WHERE name = %s", (CHECKPOINT,)
        )
        row = await cur.fetchone()
        position = int(row[0]) if row else 0
        await cur.execute(FINDINGS, (project_id,))
        findings = list(await cur.fetchall())
        dcur = conn.cursor(row_factory=dict_row)
        await dcur.execute(PROFILE, (project_id,))
        profile_row = await dcur.fetchone()
        await dcur.execute(EXCEPTIONS, (project_id, environment, now))
        exceptions = await dcur.fetchall()
        await dcur.execute(SCANS, (project_id, commit))
        scans = await dcur.fetchall()
        await dcur.execute(TESTS, (project_id, commit))
        tests = await dcur.fetchall()
        await dcur.execute(APPROVALS, (promotion_id,))
        approvals = await dcur.fetchall()
        previous = None
        if from_environment is not None:
            await dcur.execute(ENVIRONMENT, (project_id, from_environment))
            previous = await dcur.fetchone()
    return GateSnapshot(
        position=position,
        profile=profile_row["profile"] if profile_row else None,
        findings=findings,
        exceptions=exceptions,
        scans=scans,
        tests=tests,
        approvals=approvals,
        previous=previous,
    )
