"""scan_target_view and scan_job_view: registered targets and the state of every scan job.

Rows change only when an event's aggregate version is newer than the row's, so applying an
event twice changes nothing; every value comes from the event, so a rebuild is identical.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from contracts.envelope import EventEnvelope, event_type
from projections.base import Batch, Cursor, Projection

TARGET = "scan_target"
JOB = "scan_job"


# --- targets ------------------------------------------------------------------------------------


async def _registered(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO scan_target_view (id, org, project_id, name, kind, location, scanners,"
        " schedule, rules, branch, timeout_seconds, status, registered_at, registered_by,"
        " updated_at, version, position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'active', %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            env.org,
            d["project_id"],
            d["name"],
            d["kind"],
            d["location"],
            Jsonb(d["scanners"]),
            d.get("schedule"),
            d.get("rules"),
            d["branch"],
            d["timeout_seconds"],
            env.time,
            env.actor,
            env.time,
            env.aggregateversion,
            env.position,
        ),
    )


async def _redefined(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    """Updated or registered again: the whole definition is replaced and the target active."""
    d = env.data
    await cur.execute(
        "UPDATE scan_target_view SET kind = %s, location = %s, scanners = %s, schedule = %s,"
        " rules = %s, branch = %s, timeout_seconds = %s, status = 'active', updated_at = %s,"
        " version = %s, position = %s WHERE id = %s AND version < %s",
        (
            d["kind"],
            d["location"],
            Jsonb(d["scanners"]),
            d.get("schedule"),
            d.get("rules"),
            d["branch"],
            d["timeout_seconds"],
            env.time,
            *_versioned(env),
        ),
    )


async def _removed(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await cur.execute(
        "UPDATE scan_target_view SET status = 'removed', updated_at = %s, version = %s,"
        " position = %s WHERE id = %s AND version < %s",
        (env.time, *_versioned(env)),
    )


def _versioned(env: EventEnvelope) -> tuple[Any, ...]:
    """(version, position, id, version): the tail of every version-guarded UPDATE."""
    return env.aggregateversion, env.position, env.aggregateid, env.aggregateversion


# --- jobs ---------------------------------------------------------------------------------------


async def _requested(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO scan_job_view (id, org, project_id, target_id, target_name, scanner, kind,"
        " location, trigger, slot, status, attempt, requested_at, requested_by, version, position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'queued', 0, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            env.org,
            d["project_id"],
            d["target_id"],
            d["target_name"],
            d["scanner"],
            d["kind"],
            d["location"],
            d["trigger"],
            d.get("slot"),
            d["requested_at"],
            env.actor,
            env.aggregateversion,
            env.position,
        ),
    )
    await cur.execute(
        "UPDATE scan_target_view SET last_job_id = %s, last_job_status = 'queued',"
        " last_requested_at = %s, last_slot = GREATEST(last_slot, %s::timestamptz)"
        " WHERE id = %s AND (last_requested_at IS NULL OR last_requested_at <= %s)",
        (env.aggregateid, d["requested_at"], d.get("slot"), d["target_id"], d["requested_at"]),
    )


async def _job_status(
    cur: Cursor, env: EventEnvelope, status: str, sets: str, *values: Any
) -> None:
    """Move a job to `status` (setting the `sets` columns), and its target's last-job status."""
    await cur.execute(
        f"UPDATE scan_job_view SET status = %s, {sets}, version = %s, position = %s"  # noqa: S608
        " WHERE id = %s AND version < %s",
        (status, *values, *_versioned(env)),
    )
    await cur.execute(
        "UPDATE scan_target_view SET last_job_status = %s"
        " WHERE id = (SELECT target_id FROM scan_job_view WHERE id = %s) AND last_job_id = %s",
        (status, env.aggregateid, env.aggregateid),
    )


async def _started(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await _job_status(
        cur,
        env,
        "running",
        "attempt = %s, started_at = %s, retry_at = NULL",
        d["attempt"],
        d["started_at"],
    )


async def _succeeded(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await _job_status(
        cur,
        env,
        "succeeded",
        "finished_at = %s, scan_id = %s, counts = %s, tool_version = %s, last_error = NULL",
        d["finished_at"],
        d["scan_id"],
        Jsonb(d["counts"]),
        d.get("tool_version"),
    )


async def _failed(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await _job_status(
        cur,
        env,
        "retry_wait" if d["will_retry"] else "failed",
        "finished_at = %s, last_error = %s, retry_at = %s",
        d["finished_at"],
        d["reason"],
        d.get("retry_at"),
    )


async def _cancelled(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await _job_status(
        cur, env, "cancelled", "finished_at = %s, last_error = %s", d["cancelled_at"], d["reason"]
    )


PROJECTION = Projection(
    name="scan_targets",
    tables=("scan_target_view", "scan_job_view"),
    handlers={
        event_type(TARGET, "registered"): _registered,
        event_type(TARGET, "updated"): _redefined,
        event_type(TARGET, "reregistered"): _redefined,
        event_type(TARGET, "removed"): _removed,
        event_type(JOB, "requested"): _requested,
        event_type(JOB, "started"): _started,
        event_type(JOB, "retried"): _started,
        event_type(JOB, "succeeded"): _succeeded,
        event_type(JOB, "failed"): _failed,
        event_type(JOB, "cancelled"): _cancelled,
    },
)
