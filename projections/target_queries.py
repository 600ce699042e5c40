"""Read-side queries over scan_target_view and scan_job_view; each runs in one org's scope.

They go through `queries.read_rows`, so they run as the row-level-security reader role like every
other API read; `scope` is the caller's org, or `*` for platform administrators.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from projections.queries import ALL_ORGS, Page, Pool, read_rows

TARGET_COLUMNS = (
    "id, org, project_id, name, kind, location, scanners, schedule, rules, branch,"
    " timeout_seconds, status, registered_at, registered_by, updated_at, last_job_id,"
    " last_job_status, last_requested_at, last_slot, version"
)
JOB_COLUMNS = (
    "id, org, project_id, target_id, target_name, scanner, kind, location, trigger, slot,"
    " status, attempt, requested_at, requested_by, started_at, finished_at, retry_at,"
    " last_error, scan_id, counts, tool_version, version"
)


async def targets(
    pool: Pool, project_id: str, scope: str, *, include_removed: bool = False
) -> list[dict[str, Any]]:
    where = "project_id = %s" + ("" if include_removed else " AND status = 'active'")
    return await read_rows(
        pool,
        f"SELECT {TARGET_COLUMNS} FROM scan_target_view WHERE {where} ORDER BY name",  # noqa: S608
        (project_id,),
        scope,
    )


async def target(pool: Pool, target_id: str, scope: str) -> dict[str, Any] | None:
    rows = await read_rows(
        pool,
        f"SELECT {TARGET_COLUMNS} FROM scan_target_view WHERE id = %s",  # noqa: S608
        (target_id,),
        scope,
    )
    return rows[0] if rows else None


async def jobs(
    pool: Pool,
    project_id: str,
    scope: str,
    *,
    target_id: str | None = None,
    status: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> Page:
    """A project's jobs, newest request last, keyset-paginated on the store position."""
    where = ["project_id = %s"]
    params: list[Any] = [project_id]
    if target_id:
        where.append("target_id = %s")
        params.append(target_id)
    if status:
        where.append("status = %s")
        params.append(status)
    if after is not None:
        where.append("position > %s")
        params.append(after)
    params.append(limit + 1)
    rows = await read_rows(
        pool,
        f"SELECT {JOB_COLUMNS}, position FROM scan_job_view"  # noqa: S608
        f" WHERE {' AND '.join(where)} ORDER BY position LIMIT %s",
        params,
        scope,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1]["position"]) if more else None)


async def job(pool: Pool, job_id: str, scope: str) -> dict[str, Any] | None:
    rows = await read_rows(
        pool,
        f"SELECT {JOB_COLUMNS} FROM scan_job_view WHERE id = %s",  # noqa: S608
        (job_id,),
        scope,
    )
    return rows[0] if rows else None


async def scheduled_targets(pool: Pool) -> list[tuple[str, str, datetime | None]]:
    """(id, schedule, last slot) of every active scheduled target of every org (the scheduler)."""
    rows = await read_rows(
        pool,
        "SELECT id, schedule, last_slot FROM scan_target_view"
        " WHERE status = 'active' AND schedule IS NOT NULL ORDER BY id",
        (),
        ALL_ORGS,
    )
    return [(str(r["id"]), str(r["schedule"]), r["last_slot"]) for r in rows]
