"""Agent and task packet read models: `agent_view` and `task_view`.

Every update is guarded by the aggregate version last applied (`version_no`), every insert by
its key, so applying an event twice changes nothing; every value comes from the event, so a
rebuild gives identical rows.
"""

from __future__ import annotations

from psycopg.types.json import Jsonb

from contracts.envelope import EventEnvelope, event_type
from domain.remediation import worst_severity
from projections.base import Batch, Cursor, Projection, update_once

# --- agents --------------------------------------------------------------------------------------


async def _agent_registered(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO agent_view (id, org, slug, name, owner, capabilities, autonomy,"
        " registered_at, registered_by, updated_at, version_no, position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            env.org,
            d["slug"],
            d["name"],
            d["owner"],
            Jsonb(d["capabilities"]),
            Jsonb({"*": "observe", **d["autonomy"]}),
            d["registered_at"],
            env.actor,
            d["registered_at"],
            env.aggregateversion,
            env.position,
        ),
    )


async def _autonomy_set(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await update_once(
        cur,
        "agent_view",
        "autonomy = autonomy || jsonb_build_object(%s::text, %s::text), updated_at = %s",
        env,
        d["environment"],
        d["level"],
        env.time,
    )


async def _paused(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await update_once(
        cur,
        "agent_view",
        "paused = true, pause_reason = %s, updated_at = %s",
        env,
        env.data["reason"],
        env.time,
    )


async def _resumed(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await update_once(
        cur, "agent_view", "paused = false, pause_reason = NULL, updated_at = %s", env, env.time
    )


# --- task packets --------------------------------------------------------------------------------


async def _task_created(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    targets = d["targets"]
    await cur.execute(
        "INSERT INTO task_view (id, org, project_id, key, title, status, priority, severity, due,"
        " finding_ids, fingerprints, remaining, targets, spec, guard_rails, last_event,"
        " created_at, created_by, updated_at, version_no, position)"
        " VALUES (%s, %s, %s, %s, %s, 'open', %s, %s, %s, %s, %s, %s, %s, %s, %s, 'created',"
        " %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            env.org,
            d["project_id"],
            d["key"],
            d["title"],
            d["priority"],
            worst_severity(t["severity"] for t in targets),
            d["due"],
            [t["id"] for t in targets],
            [t["fingerprint"] for t in targets],
            [t["fingerprint"] for t in targets],
            Jsonb(targets),
            Jsonb(d["spec"]),
            Jsonb(d["guard_rails"]),
            d["created_at"],
            env.actor,
            d["created_at"],
            env.aggregateversion,
            env.position,
        ),
    )


async def _claimed(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await update_once(
        cur,
        "task_view",
        "status = 'claimed', holder = %s, lease_expires_at = %s, attempts = attempts + 1,"
        " last_event = 'claimed', updated_at = %s",
        env,
        d["holder"],
        d["lease_expires_at"],
        d["at"],
    )


async def _lease_renewed(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await update_once(
        cur,
        "task_view",
        "lease_expires_at = %s, last_event = 'lease_renewed', updated_at = %s",
        env,
        d["lease_expires_at"],
        d["at"],
    )


async def _released(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    """Released (abandoned, failed, revoked) or lease expired: claimable again."""
    name = env.type.split(".")[-2]
    last = env.data.get("outcome", name)
    await update_once(
        cur,
        "task_view",
        "status = 'open', holder = NULL, lease_expires_at = NULL, last_event = %s, updated_at = %s",
        env,
        last,
        env.data["at"],
    )


async def _completed(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await update_once(
        cur,
        "task_view",
        "status = 'completed', outcome = %s, lease_expires_at = NULL,"
        " last_event = 'completed', updated_at = %s",
        env,
        Jsonb(d["outcome"]),
        d["at"],
    )


async def _verified(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await update_once(
        cur,
        "task_view",
        "status = 'verified', holder = NULL, remaining = '{}', last_event = 'verified',"
        " updated_at = %s",
        env,
        env.data["at"],
    )


async def _reopened(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await update_once(
        cur,
        "task_view",
        "status = 'open', holder = NULL, remaining = %s, last_event = 'reopened', updated_at = %s",
        env,
        d["remaining"],
        d["at"],
    )


PROJECTION = Projection(
    name="agents",
    tables=("agent_view", "task_view"),
    handlers={
        event_type("agent", "registered"): _agent_registered,
        event_type("agent", "autonomy_set"): _autonomy_set,
        event_type("agent", "paused"): _paused,
        event_type("agent", "resumed"): _resumed,
        event_type("task_packet", "created"): _task_created,
        event_type("task_packet", "claimed"): _claimed,
        event_type("task_packet", "lease_renewed"): _lease_renewed,
        event_type("task_packet", "released"): _released,
        event_type("task_packet", "lease_expired"): _released,
        event_type("task_packet", "completed"): _completed,
        event_type("task_packet", "verified"): _verified,
        event_type("task_packet", "reopened"): _reopened,
    },
)
