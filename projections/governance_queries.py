"""Read-side queries over the governance read models; each runs in one org's scope.

They go through `queries.read_rows`, so they run as the row-level-security reader role like every
other API read; `scope` is the caller's org, or `*` for platform administrators (and for the
scheduler's queries, which look at every org). Lists are keyset-paginated on `position`, the
store position of the event that created the row, which never changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from projections.queries import ALL_ORGS, Page, Pool, read_rows

OPEN_PROMOTION = "status IN ('pending', 'passed', 'failed', 'awaiting_approval')"

POLICY_VERSION_COLUMNS = (
    "policy_id, version, org, project_id, environment, document, digest, reason, author,"
    " created_at, position"
)
VERSION_COLUMNS = (
    "id, org, project_id, version, commit_sha, artifact_digest, digest, author, registered_at,"
    " registered_by, position"
)
TEST_RUN_COLUMNS = (
    "id, org, project_id, commit_sha, suite, passed, failed, skipped, coverage, submitted_at,"
    " submitted_by, position"
)
PROMOTION_COLUMNS = (
    "id, org, project_id, version, commit_sha, version_digest, from_environment, to_environment,"
    " author, reason, status, requested_by, requested_at, evaluations, last_decision_id,"
    " last_result, last_evaluated_at, approval_request_id, closed_at, close_reason, closed_by,"
    " version_no, position"
)
DECISION_COLUMNS = (
    "decision_id, promotion_id, org, project_id, environment, seq, result, inputs_digest, policy,"
    " rules, evaluated_at, as_of_position, trigger, actor, position"
)
ENVIRONMENT_COLUMNS = (
    "id, org, project_id, name, current_version, current_digest, current_commit, live_since,"
    " pending_promotion_id, failed_digests, version, position"
)
RELEASE_COLUMNS = (
    "environment_id, seq, org, project_id, environment, kind, version, digest, commit_sha,"
    " promotion_id, from_version, reason, at, actor, position"
)
APPROVAL_COLUMNS = (
    "id, org, project_id, promotion_id, number, environment, version, version_digest,"
    " required_count, roles, requested_by, author, requested_at, expires_at, status, approvals,"
    " decisions, comments, version_no, position"
)
EXCEPTION_COLUMNS = (
    "id, org, project_id, environment, finding_ids, rule_id, cwe, justification,"
    " compensating_controls, requested_by, requested_at, expires_at, status, approved_by,"
    " decided_at, reason, version_no, position"
)


def _paged(rows: list[dict[str, Any]], limit: int) -> Page:
    """Rows fetched with `limit + 1`, ordered by position: the cursor is the last position."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1]["position"]) if more else None)


async def read_page(
    pool: Pool,
    table: str,
    columns: str,
    filters: list[tuple[str, Any]],
    scope: str,
    after: int | None,
    limit: int,
) -> Page:
    """`filters` are (`column = %s`-style condition, value) pairs; value None skips one."""
    where = [cond for cond, value in filters if value is not None]
    params: list[Any] = [value for _, value in filters if value is not None]
    if after is not None:
        where.append("position > %s")
        params.append(after)
    params.append(limit + 1)
    rows = await read_rows(
        pool,
        f"SELECT {columns} FROM {table}"  # noqa: S608 - constant names only
        f" WHERE {' AND '.join(where)} ORDER BY position LIMIT %s",
        params,
        scope,
    )
    return _paged(rows, limit)


async def read_one(pool: Pool, table: str, columns: str, key: str, value: str, scope: str) -> Any:
    rows = await read_rows(
        pool,
        f"SELECT {columns} FROM {table} WHERE {key} = %s",  # noqa: S608 - constant names only
        (value,),
        scope,
    )
    return rows[0] if rows else None


# --- policies, versions, test runs ---------------------------------------------------------------


async def policy_versions(
    pool: Pool, scope: str, org: str, project_id: str | None, environment: str
) -> list[dict[str, Any]]:
    """Every version of the baseline (`project_id` None) or project policy, oldest first."""
    return await read_rows(
        pool,
        f"SELECT {POLICY_VERSION_COLUMNS} FROM policy_version_view"  # noqa: S608
        " WHERE org = %s AND project_id IS NOT DISTINCT FROM %s::uuid AND environment = %s"
        " ORDER BY version",
        (org, project_id, environment),
        scope,
    )


async def versions(pool: Pool, project_id: str, scope: str) -> list[dict[str, Any]]:
    return await read_rows(
        pool,
        f"SELECT {VERSION_COLUMNS} FROM release_version_view"  # noqa: S608
        " WHERE project_id = %s ORDER BY position",
        (project_id,),
        scope,
    )


async def test_runs(
    pool: Pool, project_id: str, scope: str, *, commit: str | None = None
) -> list[dict[str, Any]]:
    where = "project_id = %s" + (" AND commit_sha = %s" if commit else "")
    params = (project_id, commit) if commit else (project_id,)
    return await read_rows(
        pool,
        f"SELECT {TEST_RUN_COLUMNS} FROM test_run_view"  # noqa: S608
        f" WHERE {where} ORDER BY position",
        params,
        scope,
    )


# --- promotions and decisions --------------------------------------------------------------------


async def promotions(
    pool: Pool,
    project_id: str,
    scope: str,
    *,
    status: str | None = None,
    environment: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> Page:
    filters = [
        ("project_id = %s", project_id),
        ("status = %s", status),
        ("to_environment = %s", environment),
    ]
    return await read_page(pool, "promotion_view", PROMOTION_COLUMNS, filters, scope, after, limit)


async def promotion(pool: Pool, promotion_id: str, scope: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = await read_one(
        pool, "promotion_view", PROMOTION_COLUMNS, "id", promotion_id, scope
    )
    return row


async def decisions(pool: Pool, promotion_id: str, scope: str) -> list[dict[str, Any]]:
    """A promotion's gate decisions, first evaluation first."""
    return await read_rows(
        pool,
        f"SELECT {DECISION_COLUMNS} FROM gate_decision_view"  # noqa: S608
        " WHERE promotion_id = %s ORDER BY seq",
        (promotion_id,),
        scope,
    )


async def decision(pool: Pool, decision_id: str, scope: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = await read_one(
        pool, "gate_decision_view", DECISION_COLUMNS, "decision_id", decision_id, scope
    )
    return row


# --- environments and releases -------------------------------------------------------------------


async def environments(pool: Pool, project_id: str, scope: str) -> list[dict[str, Any]]:
    """The environments a promotion ever targeted: what is live since when, what is pending."""
    return await read_rows(
        pool,
        f"SELECT {ENVIRONMENT_COLUMNS} FROM environment_view"  # noqa: S608
        " WHERE project_id = %s ORDER BY name",
        (project_id,),
        scope,
    )


async def releases(
    pool: Pool,
    project_id: str,
    scope: str,
    *,
    environment: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> Page:
    """The promotion history: every promotion and rollback, oldest first."""
    filters = [("project_id = %s", project_id), ("environment = %s", environment)]
    return await read_page(pool, "release_view", RELEASE_COLUMNS, filters, scope, after, limit)


# --- approvals and exceptions --------------------------------------------------------------------


async def approvals(
    pool: Pool,
    project_id: str,
    scope: str,
    *,
    status: str | None = None,
    promotion_id: str | None = None,
) -> list[dict[str, Any]]:
    filters = [
        ("project_id = %s", project_id),
        ("status = %s", status),
        ("promotion_id = %s", promotion_id),
    ]
    where = [cond for cond, value in filters if value is not None]
    params = [value for _, value in filters if value is not None]
    return await read_rows(
        pool,
        f"SELECT {APPROVAL_COLUMNS} FROM approval_view"  # noqa: S608
        f" WHERE {' AND '.join(where)} ORDER BY position",
        params,
        scope,
    )


async def approval(pool: Pool, request_id: str, scope: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = await read_one(
        pool, "approval_view", APPROVAL_COLUMNS, "id", request_id, scope
    )
    return row


async def exceptions(
    pool: Pool,
    project_id: str,
    scope: str,
    *,
    status: str | None = None,
    after: int | None = None,
    limit: int = 100,
) -> Page:
    filters = [("project_id = %s", project_id), ("status = %s", status)]
    return await read_page(pool, "exception_view", EXCEPTION_COLUMNS, filters, scope, after, limit)


async def exception(pool: Pool, exception_id: str, scope: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = await read_one(
        pool, "exception_view", EXCEPTION_COLUMNS, "id", exception_id, scope
    )
    return row


# --- for the scheduler and the gatekeeper (every org) --------------------------------------------


async def _ids(pool: Pool, sql: str, params: tuple[Any, ...]) -> list[str]:
    return [str(r["id"]) for r in await read_rows(pool, sql, params, ALL_ORGS)]


async def approvals_due(pool: Pool, now: datetime, limit: int = 100) -> list[str]:
    """Pending approval requests whose expiry has passed, soonest first."""
    return await _ids(
        pool,
        "SELECT id FROM approval_view WHERE status = 'pending' AND expires_at <= %s"
        " ORDER BY expires_at, id LIMIT %s",
        (now, limit),
    )


async def exceptions_due(pool: Pool, now: datetime, limit: int = 100) -> list[str]:
    """Requested or active exceptions whose expiry has passed, soonest first."""
    return await _ids(
        pool,
        "SELECT id FROM exception_view WHERE status IN ('requested', 'active')"
        " AND expires_at <= %s ORDER BY expires_at, id LIMIT %s",
        (now, limit),
    )


async def open_promotions(pool: Pool, project_id: str) -> list[str]:
    """A project's open promotions (their gates are re-evaluated when its facts change)."""
    return await _ids(
        pool,
        f"SELECT id FROM promotion_view WHERE project_id = %s AND {OPEN_PROMOTION}"  # noqa: S608
        " ORDER BY position",
        (project_id,),
    )


async def open_promotions_in_org_env(pool: Pool, org: str, environment: str) -> list[str]:
    """Open promotions into one environment of any project of an org (a baseline changed)."""
    return await _ids(
        pool,
        f"SELECT id FROM promotion_view WHERE org = %s AND to_environment = %s"  # noqa: S608
        f" AND {OPEN_PROMOTION} ORDER BY position",
        (org, environment),
    )
