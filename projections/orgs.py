"""org_view and project_view: the tenants and their projects."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from contracts.envelope import EventEnvelope, event_type
from projections.base import Batch, Cursor, Projection


async def _org_created(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await cur.execute(
        "INSERT INTO org_view (org, id, name, created_at, created_by, position)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (org) DO NOTHING",
        (env.org, env.aggregateid, env.data["name"], env.time, env.actor, env.position),
    )


async def _project_created(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO project_view (id, org, slug, name, environments, created_at, position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            env.org,
            d["slug"],
            d["name"],
            Jsonb(d["environments"]),
            env.time,
            env.position,
        ),
    )


async def _profile_set(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await cur.execute(
        "UPDATE project_view SET profile = %s, profile_position = %s"
        " WHERE id = %s AND profile_position < %s",
        (Jsonb(env.data["profile"]), env.position, env.aggregateid, env.position),
    )


PROJECTION = Projection(
    name="orgs",
    tables=("org_view", "project_view"),
    handlers={
        event_type("org", "created"): _org_created,
        event_type("project", "created"): _project_created,
        event_type("project", "profile_set"): _profile_set,
    },
)
