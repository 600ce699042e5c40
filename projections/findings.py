"""finding_view: the current state of every finding, one row each, idempotent by version.

Every write sets `position` to its event's position: the gate service keeps each project's
open findings and re-reads only rows newer than what it holds (ADR 0008).
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from contracts.envelope import EventEnvelope, event_type
from projections.base import Batch, Cursor, Insert, Projection


def _recorded_row(env: EventEnvelope, batch: Batch) -> tuple[Any, ...]:
    d = env.data
    details = d.get("details") or {}
    return (
        env.aggregateid,
        env.org,
        d["project_id"],
        d["fingerprint"],
        d["tool"],
        Jsonb([d["tool"]]),
        d["rule_id"],
        d["title"],
        d["severity"],
        "open",
        details.get("path"),
        details.get("line"),
        Jsonb(details),
        d["seen_at"],
        d["seen_at"],
        1 if d.get("scan_id") else 0,
        d.get("sla_due"),
        env.aggregateversion,
        env.position,
    )


_recorded = Insert(
    "finding_view",
    "id org project_id fingerprint tool sources rule_id title severity status path line details"
    " first_seen last_seen scan_count sla_due version position",
    _recorded_row,
)


async def _seen(cur: Cursor, env: EventEnvelope, status: str | None) -> None:
    d = env.data
    await cur.execute(
        "UPDATE finding_view SET last_seen = %s, scan_count = scan_count + 1,"
        " sources = CASE WHEN sources ? %s THEN sources ELSE sources || %s END,"
        " status = COALESCE(%s, status), version = %s, position = %s"
        " WHERE id = %s AND version < %s",
        (
            d["seen_at"],
            d["tool"],
            Jsonb([d["tool"]]),
            status,
            env.aggregateversion,
            env.position,
            env.aggregateid,
            env.aggregateversion,
        ),
    )


async def _seen_again(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await _seen(cur, env, None)


async def _reopened(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await _seen(cur, env, "reopened")


async def _set_status(
    cur: Cursor, env: EventEnvelope, status: str, justification: str | None = None
) -> None:
    await cur.execute(
        "UPDATE finding_view SET status = %s, justification = COALESCE(%s, justification),"
        " version = %s, position = %s WHERE id = %s AND version < %s",
        (
            status,
            justification,
            env.aggregateversion,
            env.position,
            env.aggregateid,
            env.aggregateversion,
        ),
    )


async def _fixed(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await _set_status(cur, env, "fixed")


async def _triaged(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await _set_status(cur, env, env.data["status"], env.data["justification"])


async def _sla_breached(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await cur.execute(
        "UPDATE finding_view SET sla_breached_at = %s, version = %s, position = %s"
        " WHERE id = %s AND version < %s",
        (
            env.data["at"],
            env.aggregateversion,
            env.position,
            env.aggregateid,
            env.aggregateversion,
        ),
    )


PROJECTION = Projection(
    name="findings",
    tables=("finding_view",),
    handlers={
        event_type("finding", "recorded"): _recorded,
        event_type("finding", "sla_breached"): _sla_breached,
        event_type("finding", "recorded", 2): _recorded,
        event_type("finding", "seen_again"): _seen_again,
        event_type("finding", "reopened"): _reopened,
        event_type("finding", "fixed"): _fixed,
        event_type("finding", "triaged"): _triaged,
    },
)
