"""aggregate_scope: which org and project each aggregate belongs to (used to filter by project)."""

from __future__ import annotations

from contracts.envelope import EventEnvelope
from projections.base import Cursor, Projection


async def _scope(cur: Cursor, env: EventEnvelope) -> None:
    if env.aggregateversion != 1:
        return
    project_id = env.aggregateid if env.aggregate == "project" else env.data.get("project_id")
    await cur.execute(
        "INSERT INTO aggregate_scope (aggregate_id, org, aggregate, project_id)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (aggregate_id) DO NOTHING",
        (env.aggregateid, env.org, env.aggregate, project_id),
    )


PROJECTION = Projection(
    name="aggregate_scope", tables=("aggregate_scope",), handlers={}, every=_scope
)
