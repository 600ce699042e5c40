"""audit_log: one row per event, hash-chained per org so tampering is detectable offline."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import msgspec
from psycopg.types.json import Jsonb

from contracts.envelope import EventEnvelope
from projections.base import Batch, Cursor, Insert, Projection

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


def chain_hash(prev_hash: str, entry: dict[str, Any], *, json_native: bool = False) -> str:
    """SHA-256 over the previous entry's hash and this entry's canonical JSON."""
    blob = canonical_json(entry, json_native=json_native)
    return hashlib.sha256(prev_hash.encode() + b"\n" + blob).hexdigest()


def canonical_json(value: Any, *, json_native: bool = False) -> bytes:
    """`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`, UTF-8.

    msgspec writes the same bytes for strings, integers, booleans, null, lists and dicts with
    string keys (sorted by code point), ten times faster; floats it writes differently
    (`1e16`, not `1e+16`), so a value holding anything else goes through the json module.
    `json_native`: the caller knows the value holds nothing else (the check is skipped).
    """
    if json_native or _msgspec_safe(value):
        return _sorted_json(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_sorted_json = msgspec.json.Encoder(order="sorted").encode
_SCALARS = frozenset({str, int, bool, type(None)})


def _msgspec_safe(value: Any) -> bool:
    todo = [value]
    while todo:
        item = todo.pop()
        kind = type(item)
        if kind is dict:
            for key, inner in item.items():
                if type(key) is not str:
                    return False
                if type(inner) not in _SCALARS:
                    todo.append(inner)
        elif kind is list:
            todo.extend(inner for inner in item if type(inner) not in _SCALARS)
        elif kind not in _SCALARS:
            return False
    return True


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


def _entry_row(env: EventEnvelope, batch: Batch) -> tuple[Any, ...]:
    """The event's audit row; moves its org's chain head in the batch."""
    seq, prev = batch.heads.get(env.org, (0, GENESIS))
    seq += 1
    digest = chain_hash(prev, canonical_entry(env, seq))
    batch.heads[env.org] = (seq, digest)
    batch.moved[env.org] = env.position
    return (
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
    )


_append = Insert(
    "audit_log",
    "position org seq event_id type aggregate aggregate_id aggregate_version project_id actor"
    " actor_kind occurred_at data trace_id prev_hash hash",
    _entry_row,
    key=None,
)


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
