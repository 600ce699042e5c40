"""Read-side queries over the read models; every query is scoped to one org.

Each query runs as the `pearl_reader` role with `pearl.org` set to the caller's org, so
PostgreSQL row-level security hides other orgs' rows even if a query forgot its filter.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from projections.runner import CHECKPOINT, READER_ROLE

Pool = AsyncConnectionPool[AsyncConnection[Any]]


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def page(rows: list[dict[str, Any]], limit: int, key: str) -> Page:
    """Rows were fetched with `limit + 1`: cut to `limit`, the cursor is the last row's `key`."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1][key]) if more else None)


ALL_ORGS = "*"


async def read_rows(
    pool: Pool, sql: str, params: tuple[Any, ...] | list[Any], scope: str
) -> list[dict[str, Any]]:
    """Run one read as `pearl_reader` in `scope` (an org, or `*` for platform administrators)."""
    async with (
        pool.connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(f"SET LOCAL ROLE {READER_ROLE}")
        await cur.execute("SELECT set_config('pearl.org', %s, true)", (scope,))
        await cur.execute(sql, params)
        return await cur.fetchall()


async def position(pool: Pool) -> int:
    rows = await read_rows(
        pool, "SELECT position FROM projection_checkpoint WHERE name = %s", (CHECKPOINT,), ""
    )
    return int(rows[0]["position"]) if rows else 0


async def wait_for_position(pool: Pool, target: int, timeout: float) -> bool:
    """Read-your-writes: wait (bounded) until the read models reached `target`."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if await position(pool) >= target:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


async def org(pool: Pool, slug: str) -> dict[str, Any] | None:
    rows = await read_rows(
        pool,
        "SELECT org, id, name, created_at, created_by FROM org_view WHERE org = %s",
        (slug,),
        slug,
    )
    return rows[0] if rows else None


async def project(pool: Pool, project_id: str, scope: str) -> dict[str, Any] | None:
    rows = await read_rows(
        pool,
        "SELECT id, org, slug, name, environments, created_at FROM project_view WHERE id = %s",
        (project_id,),
        scope,
    )
    return rows[0] if rows else None


async def projects(pool: Pool, org_slug: str) -> list[dict[str, Any]]:
    return await read_rows(
        pool,
        "SELECT id, org, slug, name, environments, created_at"
        " FROM project_view WHERE org = %s ORDER BY slug",
        (org_slug,),
        org_slug,
    )


FINDING_COLUMNS = (
    "id, org, project_id, fingerprint, tool, sources, rule_id, title, severity, status, path,"
    " line, details, first_seen, last_seen, scan_count, sla_due, justification, version"
)


async def findings(
    pool: Pool,
    org_slug: str,
    project_id: str,
    *,
    status: str | None = None,
    severity: str | None = None,
    tool: str | None = None,
    path_prefix: str | None = None,
    cwe: str | None = None,
    overdue_at: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> Page:
    where = ["org = %s", "project_id = %s"]
    params: list[Any] = [org_slug, project_id]
    for column, value in (("status", status), ("severity", severity), ("tool", tool)):
        if value:
            where.append(f"{column} = %s")
            params.append(value)
    if path_prefix:
        where.append("path LIKE %s")
        params.append(path_prefix.replace("%", r"\%").replace("_", r"\_") + "%")
    if cwe:
        where.append("details->'cwe' ? %s")
        params.append(cwe.upper())
    if overdue_at:
        where.append("sla_due < %s AND status IN ('open', 'reopened')")
        params.append(overdue_at)
    if after:
        where.append("id > %s")
        params.append(after)
    params.append(limit + 1)
    sql = (
        f"SELECT {FINDING_COLUMNS} FROM finding_view WHERE {' AND '.join(where)}"  # noqa: S608
        " ORDER BY id LIMIT %s"
    )
    rows = await read_rows(pool, sql, params, org_slug)
    return page(rows, limit, "id")


async def finding(pool: Pool, finding_id: str, scope: str) -> dict[str, Any] | None:
    rows = await read_rows(
        pool,
        f"SELECT {FINDING_COLUMNS} FROM finding_view WHERE id = %s",  # noqa: S608
        (finding_id,),
        scope,
    )
    return rows[0] if rows else None


async def position_at(pool: Pool, org_slug: str, when: datetime) -> int:
    """The store position of the org's last event at or before `when` (0 before any)."""
    rows = await read_rows(
        pool,
        "SELECT coalesce(max(position), 0) AS position FROM audit_log"
        " WHERE org = %s AND occurred_at <= %s",
        (org_slug, when),
        org_slug,
    )
    return int(rows[0]["position"])


async def aggregate_ids(pool: Pool, org_slug: str, project_id: str, aggregate: str) -> list[str]:
    """Every aggregate of a kind that ever belonged to a project (scope never changes)."""
    rows = await read_rows(
        pool,
        "SELECT aggregate_id FROM aggregate_scope WHERE org = %s AND project_id = %s"
        " AND aggregate = %s",
        (org_slug, project_id, aggregate),
        org_slug,
    )
    return [str(r["aggregate_id"]) for r in rows]


async def sla_due(pool: Pool, now: datetime, limit: int) -> list[str]:
    """Open findings past their SLA due date and not yet marked breached (all orgs)."""
    rows = await read_rows(
        pool,
        "SELECT id FROM finding_view WHERE status IN ('open', 'reopened')"
        " AND sla_breached_at IS NULL AND sla_due IS NOT NULL AND sla_due <= %s"
        " ORDER BY sla_due LIMIT %s",
        (now, limit),
        ALL_ORGS,
    )
    return [str(r["id"]) for r in rows]


async def project_of(pool: Pool, aggregate_id: str) -> str | None:
    """The project an aggregate belongs to (from the scope index), across orgs (system reads)."""
    rows = await read_rows(
        pool,
        "SELECT project_id FROM aggregate_scope WHERE aggregate_id = %s",
        (aggregate_id,),
        ALL_ORGS,
    )
    return str(rows[0]["project_id"]) if rows and rows[0]["project_id"] else None


SCAN_COLUMNS = (
    "id, org, project_id, tool, tool_version, format, target, branch, full_scan AS full, digest,"
    " size, counts, submitted_at, actor"
)


async def scans(
    pool: Pool, project_id: str, scope: str, *, after: int | None = None, limit: int = 100
) -> Page:
    params: list[Any] = [project_id]
    where = "project_id = %s"
    if after is not None:
        where += " AND position > %s"
        params.append(after)
    params.append(limit + 1)
    rows = await read_rows(
        pool,
        f"SELECT {SCAN_COLUMNS}, position FROM scan_view"  # noqa: S608
        f" WHERE {where} ORDER BY position LIMIT %s",
        params,
        scope,
    )
    return page(rows, limit, "position")


async def scan(pool: Pool, scan_id: str, scope: str) -> dict[str, Any] | None:
    rows = await read_rows(
        pool,
        f"SELECT {SCAN_COLUMNS} FROM scan_view WHERE id = %s",  # noqa: S608
        (scan_id,),
        scope,
    )
    return rows[0] if rows else None


async def api_keys(pool: Pool, org_slug: str) -> list[dict[str, Any]]:
    return await read_rows(
        pool,
        "SELECT key_id, org, name, roles, expires_at, revoked, last_used_at, created_at,"
        " created_by FROM api_key_view WHERE org = %s ORDER BY created_at",
        (org_slug,),
        org_slug,
    )


AUDIT_COLUMNS = (
    "position, org, seq, event_id, type, aggregate, aggregate_id, aggregate_version, project_id,"
    " actor, actor_kind, occurred_at, data, trace_id, prev_hash, hash"
)


async def audit(
    pool: Pool,
    org_slug: str,
    *,
    project_id: str | None = None,
    aggregate_id: str | None = None,
    actor: str | None = None,
    type_: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: int | None = None,
    limit: int = 100,
) -> Page:
    where = ["org = %s"]
    params: list[Any] = [org_slug]
    for column, value in (
        ("project_id", project_id),
        ("aggregate_id", aggregate_id),
        ("actor", actor),
        ("type", type_),
    ):
        if value:
            where.append(f"{column} = %s")
            params.append(value)
    if since is not None:
        where.append("occurred_at >= %s")
        params.append(since)
    if until is not None:
        where.append("occurred_at < %s")
        params.append(until)
    if after is not None:
        where.append("position > %s")
        params.append(after)
    params.append(limit + 1)
    sql = (
        f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {' AND '.join(where)}"  # noqa: S608
        " ORDER BY position LIMIT %s"
    )
    rows = await read_rows(pool, sql, params, org_slug)
    return page(rows, limit, "position")
