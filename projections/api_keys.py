"""api_key_view: the keys of an org (never their digest), with revocation and last use."""

from __future__ import annotations

from psycopg.types.json import Jsonb

from contracts.envelope import EventEnvelope, event_type
from projections.base import Batch, Cursor, Projection


async def _issued(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO api_key_view (id, key_id, org, name, roles, expires_at, created_at,"
        " created_by, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            d["key_id"],
            env.org,
            d["name"],
            Jsonb(d["roles"]),
            d.get("expires_at"),
            env.time,
            env.actor,
            env.aggregateversion,
        ),
    )


async def _revoked(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await cur.execute(
        "UPDATE api_key_view SET revoked = true, version = %s WHERE id = %s AND version < %s",
        (env.aggregateversion, env.aggregateid, env.aggregateversion),
    )


async def _used(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await cur.execute(
        "UPDATE api_key_view SET last_used_at = %s, version = %s WHERE id = %s AND version < %s",
        (env.data["at"], env.aggregateversion, env.aggregateid, env.aggregateversion),
    )


PROJECTION = Projection(
    name="api_keys",
    tables=("api_key_view",),
    handlers={
        event_type("api_key", "issued"): _issued,
        event_type("api_key", "revoked"): _revoked,
        event_type("api_key", "used"): _used,
    },
)
