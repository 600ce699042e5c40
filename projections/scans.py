"""scan_view: every submitted scan report with its scope and what it changed."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from contracts.envelope import EventEnvelope, event_type
from projections.base import Batch, Cursor, Projection


async def _submitted(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO scan_view (id, org, project_id, tool, tool_version, format, target, branch,"
        " full_scan, digest, size, counts, submitted_at, actor, position, commit_sha)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            env.org,
            d["project_id"],
            d["tool"],
            d.get("tool_version"),
            d["format"],
            d["target"],
            d["branch"],
            d["full"],
            d["digest"],
            d["size"],
            Jsonb(d["counts"]),
            d["submitted_at"],
            env.actor,
            env.position,
            d.get("commit"),
        ),
    )


PROJECTION = Projection(
    name="scans",
    tables=("scan_view",),
    handlers={
        event_type("scan_report", "submitted"): _submitted,
        event_type("scan_report", "submitted", 2): _submitted,
    },
)
