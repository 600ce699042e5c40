"""Read-side queries over agents and task packets; each runs in one org's scope (`*`: all).

Task lists are keyset-paginated on `position` (the store position of the creating event).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from projections.governance_queries import read_one, read_page
from projections.queries import ALL_ORGS, Page, Pool, read_rows

AGENT_COLUMNS = (
    "id, org, slug, name, owner, capabilities, autonomy, paused, pause_reason, registered_at,"
    " registered_by, updated_at, version_no, position"
)
TASK_COLUMNS = (
    "id, org, project_id, key, title, status, priority, severity, due, finding_ids, fingerprints,"
    " remaining, targets, spec, guard_rails, holder, lease_expires_at, attempts, outcome,"
    " last_event, created_at, created_by, updated_at, version_no, position"
)
UNFINISHED = "status IN ('open', 'claimed', 'completed')"


async def agents(pool: Pool, org: str, scope: str) -> list[dict[str, Any]]:
    return await read_rows(
        pool,
        f"SELECT {AGENT_COLUMNS} FROM agent_view WHERE org = %s ORDER BY slug",  # noqa: S608
        (org,),
        scope,
    )


async def agent(pool: Pool, org: str, slug: str, scope: str) -> dict[str, Any] | None:
    rows = await read_rows(
        pool,
        f"SELECT {AGENT_COLUMNS} FROM agent_view WHERE org = %s AND slug = %s",  # noqa: S608
        (org, slug),
        scope,
    )
    return rows[0] if rows else None


async def tasks(
    pool: Pool,
    project_id: str,
    scope: str,
    *,
    status: str | None = None,
    holder: str | None = None,
    priority: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> Page:
    filters = [
        ("project_id = %s", project_id),
        ("status = %s", status),
        ("holder = %s", holder),
        ("priority = %s", priority),
    ]
    return await read_page(pool, "task_view", TASK_COLUMNS, filters, scope, after, limit)


async def task(pool: Pool, task_id: str, scope: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = await read_one(
        pool, "task_view", TASK_COLUMNS, "id", task_id, scope
    )
    return row


async def untasked_findings(
    pool: Pool, project_id: str, scope: str, severities: list[str], limit: int
) -> list[str]:
    """Open findings of the project in no unfinished packet, most severe and oldest first."""
    where = " AND f.severity = ANY(%s)" if severities else ""
    params: list[Any] = [project_id, *([severities] if severities else []), limit]
    rows = await read_rows(
        pool,
        "SELECT f.id FROM finding_view f WHERE f.project_id = %s"  # noqa: S608
        f" AND f.status IN ('open', 'reopened'){where}"
        " AND NOT EXISTS (SELECT 1 FROM task_view t WHERE t.project_id = f.project_id"
        f" AND t.{UNFINISHED} AND f.id = ANY(t.finding_ids))"
        " ORDER BY array_position(ARRAY['critical','high','medium','low','info'], f.severity),"
        " f.first_seen, f.id LIMIT %s",
        params,
        scope,
    )
    return [str(r["id"]) for r in rows]


async def held_by(pool: Pool, org: str, slug: str) -> list[str]:
    """Packets an agent holds now (for the kill switch)."""
    rows = await read_rows(
        pool,
        "SELECT id FROM task_view WHERE org = %s AND status = 'claimed' AND holder = %s",
        (org, f"agent:{slug}"),
        org,
    )
    return [str(r["id"]) for r in rows]


async def completed_tasks(pool: Pool, project_id: str) -> list[str]:
    """Completed packets of a project, awaiting verification by a full scan (system read)."""
    rows = await read_rows(
        pool,
        "SELECT id FROM task_view WHERE project_id = %s AND status = 'completed'",
        (project_id,),
        ALL_ORGS,
    )
    return [str(r["id"]) for r in rows]


async def leases_to_end(pool: Pool, now: datetime, limit: int) -> list[tuple[str, str | None]]:
    """(task id, paused agent slug or None) of claims past their lease or held by a paused
    agent, across orgs: the scheduler takes them back."""
    rows = await read_rows(
        pool,
        "SELECT t.id, CASE WHEN a.paused THEN a.slug END AS paused_agent"
        " FROM task_view t LEFT JOIN agent_view a"
        " ON a.org = t.org AND t.holder = 'agent:' || a.slug"
        " WHERE t.status = 'claimed' AND (t.lease_expires_at <= %s OR a.paused)"
        " ORDER BY t.lease_expires_at LIMIT %s",
        (now, limit),
        ALL_ORGS,
    )
    return [(str(r["id"]), r["paused_agent"]) for r in rows]
