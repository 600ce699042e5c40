"""aggregate_scope: which org and project each aggregate belongs to (used to filter by project)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts.envelope import EventEnvelope
from projections.base import Batch, Cursor, Insert, Projection


async def preload(cur: Cursor, envelopes: Sequence[EventEnvelope], batch: Batch) -> None:
    """Read the scope of every aggregate in the batch in one query."""
    ids = list({env.aggregateid for env in envelopes})
    await cur.execute(
        "SELECT aggregate_id, project_id FROM aggregate_scope WHERE aggregate_id = ANY(%s)",
        (ids,),
    )
    for aggregate_id, project_id in await cur.fetchall():
        batch.scope[str(aggregate_id)] = str(project_id) if project_id else None


def _scope_row(env: EventEnvelope, batch: Batch) -> tuple[Any, ...] | None:
    if env.aggregateversion != 1:
        return None
    project_id = env.aggregateid if env.aggregate == "project" else env.data.get("project_id")
    batch.scope[env.aggregateid] = project_id
    return env.aggregateid, env.org, env.aggregate, project_id


_scope = Insert(
    "aggregate_scope", "aggregate_id org aggregate project_id", _scope_row, "aggregate_id"
)


PROJECTION = Projection(
    name="aggregate_scope", tables=("aggregate_scope",), handlers={}, every=_scope
)
