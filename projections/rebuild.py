"""Rebuild every read model from the event store, atomically (one transaction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from psycopg import AsyncConnection

from contracts.envelope import EventEnvelope
from projections.runner import (
    CHECKPOINT,
    PROJECTIONS,
    Item,
    all_tables,
    apply_batch,
    replay_into,
)

ReadBatch = Callable[[int, int], Sequence[EventEnvelope]]


async def rebuild(conn: AsyncConnection[Any], read_batch: ReadBatch, batch_size: int = 2000) -> int:
    """Empty the read models and replay the whole store; readers see old or new, never half.

    `read_batch(after, limit)` returns the next envelopes after a store position. The checkpoint
    ends at the last position with no stream sequence, so the live projector resumes after it.
    """
    tables = ", ".join([*all_tables(), "projection_checkpoint"])
    count = 0
    async with conn.transaction():
        await conn.execute(f"TRUNCATE {tables}")
        after = 0
        while True:
            envelopes = read_batch(after, batch_size)
            if not envelopes:
                break
            await apply_batch(conn, [Item(None, env) for env in envelopes])
            after = envelopes[-1].position
            count += len(envelopes)
        await conn.execute(
            "UPDATE projection_checkpoint SET stream_seq = NULL WHERE name = %s", (CHECKPOINT,)
        )
    return count


async def rebuild_some(
    conn: AsyncConnection[Any],
    names: Sequence[str],
    read_batch: ReadBatch,
    batch_size: int = 2000,
) -> int:
    """Rebuild only the named read models, up to the live checkpoint, in one transaction.

    The checkpoint row stays locked meanwhile, so the live projector waits and then carries on
    from where it was: the rebuilt tables end exactly where the others are.
    """
    chosen = [p for p in PROJECTIONS if p.name in names]
    unknown = set(names) - {p.name for p in chosen}
    if unknown:
        known = ", ".join(p.name for p in PROJECTIONS)
        raise ValueError(f"unknown read model(s) {sorted(unknown)}; known: {known}")
    count = 0
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT position FROM projection_checkpoint WHERE name = %s FOR UPDATE", (CHECKPOINT,)
        )
        row = await cur.fetchone()
        upto = int(row[0]) if row else 0
        tables = ", ".join(t for p in chosen for t in p.tables)
        await conn.execute(f"TRUNCATE {tables}")
        after = 0
        while after < upto:
            envelopes = [e for e in read_batch(after, batch_size) if e.position <= upto]
            if not envelopes:
                break
            await replay_into(conn, envelopes, chosen)
            after = envelopes[-1].position
            count += len(envelopes)
    return count
