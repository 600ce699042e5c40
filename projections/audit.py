"""audit_log: one row per event, hash-chained per org so tampering is detectable offline."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from contracts.envelope import EventEnvelope
from projections.base import Batch, Cursor, Projection

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


async def preload(cur: Cursor, envelopes: Sequence[EventEnvelope], batch: Batch) -> None:
    """Lock and read the chain heads of the batch's orgs (one query)."""
    orgs = sorted({env.org for env in envelopes})
    await cur.execute(
        "SELECT org, seq, hash FROM audit_chain_head WHERE org = ANY(%s) ORDER BY org FOR UPDATE",
        (orgs,),
    )
    for org, seq, digest in await cur.fetchall():
        batch.heads[org] = (seq, digest)


async def _append(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    seq, prev = batch.heads.get(env.org, (0, GENESIS))
    seq += 1
    digest = chain_hash(prev, canonical_entry(env, seq))
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
            batch.scope.get(env.aggregateid),
            env.actor,
            env.actor.partition(":")[0],
            env.time,
            Jsonb(env.data),
            trace_id(env.traceparent),
            prev,
            digest,
        ),
    )
    batch.heads[env.org] = (seq, digest)
    batch.moved[env.org] = env.position


async def finish(cur: Cursor, batch: Batch) -> None:
    """Store the heads the batch moved."""
    for org, position in batch.moved.items():
        seq, digest = batch.heads[org]
        await cur.execute(
            "INSERT INTO audit_chain_head (org, seq, position, hash) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (org) DO UPDATE SET seq = EXCLUDED.seq, position = EXCLUDED.position,"
            " hash = EXCLUDED.hash",
            (org, seq, position, digest),
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
