"""audit_log: one row per event, hash-chained per org so tampering is detectable offline."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from psycopg.types.json import Jsonb

from contracts.envelope import EventEnvelope
from projections.base import Cursor, Projection

GENESIS = "0" * 64


def canonical_entry(env: EventEnvelope, seq: int) -> dict[str, Any]:
    """The exact content an audit entry's hash covers."""
    return {
        "seq": seq,
        "org": env.org,
        "position": env.position,
        "event_id": env.id,
        "type": env.type,
        "aggregate_id": env.aggregateid,
        "aggregate_version": env.aggregateversion,
        "actor": env.actor,
        "time": env.time,
        "data": env.data,
    }


def chain_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    """SHA-256 over the previous entry's hash and this entry's canonical JSON."""
    blob = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(prev_hash.encode() + b"\n" + blob.encode()).hexdigest()


def trace_id(traceparent: str | None) -> str | None:
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 else None


async def _append(cur: Cursor, env: EventEnvelope) -> None:
    await cur.execute(
        "SELECT seq, hash FROM audit_chain_head WHERE org = %s FOR UPDATE", (env.org,)
    )
    head = await cur.fetchone()
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    digest = chain_hash(prev, canonical_entry(env, seq))
    await cur.execute(
        "SELECT project_id FROM aggregate_scope WHERE aggregate_id = %s", (env.aggregateid,)
    )
    scope = await cur.fetchone()
    await cur.execute(
        "INSERT INTO audit_log (position, org, seq, event_id, type, aggregate, aggregate_id,"
        " aggregate_version, project_id, actor, actor_kind, occurred_at, data, trace_id,"
        " prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            env.position,
            env.org,
            seq,
            env.id,
            env.type,
            env.aggregate,
            env.aggregateid,
            env.aggregateversion,
            scope[0] if scope else None,
            env.actor,
            env.actor.partition(":")[0],
            env.time,
            Jsonb(env.data),
            trace_id(env.traceparent),
            prev,
            digest,
        ),
    )
    await cur.execute(
        "INSERT INTO audit_chain_head (org, seq, position, hash) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (org) DO UPDATE SET seq = EXCLUDED.seq, position = EXCLUDED.position,"
        " hash = EXCLUDED.hash",
        (env.org, seq, env.position, digest),
    )


PROJECTION = Projection(
    name="audit", tables=("audit_log", "audit_chain_head"), handlers={}, every=_append
)


def verify_chain(entries: list[tuple[EventEnvelope, int, str]]) -> int | None:
    """Recompute one org's chain from (event, seq, stored hash) in order; first bad position."""
    prev = GENESIS
    for expected_seq, (env, seq, stored) in enumerate(entries, start=1):
        digest = chain_hash(prev, canonical_entry(env, expected_seq))
        if seq != expected_seq or digest != stored:
            return env.position
        prev = digest
    return None
