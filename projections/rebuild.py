"""Rebuild every read model from the event store, atomically (one transaction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from psycopg import AsyncConnection

from contracts.envelope import EventEnvelope
from projections.runner import CHECKPOINT, Item, all_tables, apply_batch

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
