"""Rebuild read models from the event store, atomically (one transaction).

The tables are emptied first, so the rows of `Insert` handlers (a new finding, an audit entry,
a scope row…) are COPYed in bulk, and the indexes of the tables they fill are dropped and built
once at the end (or as soon as another handler or a preload needs them). Every other handler
runs as live, pipelined, in store order. A projection reads and writes only its own tables and
the batch context, so a batch is applied one projection after the other: scope first, audit
last, as live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection, AsyncCopy

from contracts.envelope import EventEnvelope
from projections import audit, scope
from projections.base import Batch, Cursor, Handler, Insert, Projection
from projections.runner import CHECKPOINT, PROJECTIONS, all_tables

ReadBatch = Callable[[int, int], Sequence[EventEnvelope]]
#: Fewer rows than this for one indexed table are inserted as live (a COPY costs a round trip).
COPY_MIN = 16


async def rebuild(
    conn: AsyncConnection[Any], read_batch: ReadBatch, batch_size: int = 10_000
) -> int:
    """Empty the read models and replay the whole store; readers see old or new, never half.

    `read_batch(after, limit)` returns the next envelopes after a store position. The checkpoint
    ends at the last position with no stream sequence, so the live projector resumes after it.
    """
    tables = ", ".join([*all_tables(), "projection_checkpoint", "projection_failure"])
    count = 0
    async with conn.transaction():
        await conn.execute(f"TRUNCATE {tables}")
        async with Replay(conn, PROJECTIONS) as replay:
            after = 0
            while envelopes := read_batch(after, batch_size):
                await replay.apply(envelopes)
                after = envelopes[-1].position
                count += len(envelopes)
        if count:
            await conn.execute(
                "INSERT INTO projection_checkpoint (name, position, stream_seq)"
                " VALUES (%s, %s, NULL)",
                (CHECKPOINT, after),
            )
    return count


async def rebuild_some(
    conn: AsyncConnection[Any],
    names: Sequence[str],
    read_batch: ReadBatch,
    batch_size: int = 10_000,
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
        async with Replay(conn, chosen) as replay:
            after = 0
            while after < upto:
                envelopes = [e for e in read_batch(after, batch_size) if e.position <= upto]
                if not envelopes:
                    break
                await replay.apply(envelopes)
                after = envelopes[-1].position
                count += len(envelopes)
    return count


class Replay:
    """Applies batches to just-emptied read models: what `runner.apply_events` does, in bulk.

    Use inside the transaction that emptied the tables; leaving it builds the dropped indexes.
    """

    def __init__(self, conn: AsyncConnection[Any], chosen: Sequence[Projection]) -> None:
        self.conn = conn
        self.chosen = list(chosen)
        self.emptied = {table for p in self.chosen for table in p.tables}
        self.indexes = _Indexes()

    async def __aenter__(self) -> Replay:
        filled = {i.table for p in self.chosen for i in _inserts(p)} & self.emptied
        async with self.conn.cursor() as cur:
            await self.indexes.drop(cur, sorted(filled))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            async with self.conn.cursor() as cur:
                await self.indexes.build(cur, self.indexes.dropped)

    async def apply(self, envelopes: Sequence[EventEnvelope]) -> None:
        batch = Batch()
        async with self.conn.cursor() as cur:
            # A scope row is written by its aggregate's first event: only older ones are read.
            fresh = scope.PROJECTION in self.chosen
            older = [e for e in envelopes if not (fresh and e.aggregateversion == 1)]
            if older:
                await self.indexes.build(cur, scope.PROJECTION.tables)
            await scope.preload(cur, older, batch)
            await audit.preload(cur, envelopes, batch)
            types = {env.type for env in envelopes}
            for projection in self.chosen:
                if projection.every is not None or not types.isdisjoint(projection.handlers):
                    await self._project(cur, projection, envelopes, batch)
            if audit.PROJECTION in self.chosen:
                await audit.finish(cur, batch)

    async def _project(
        self, cur: Cursor, projection: Projection, envelopes: Sequence[EventEnvelope], batch: Batch
    ) -> None:
        """One projection's share of a batch, in store order, in runs of the same kind."""
        inserts: list[tuple[Insert, EventEnvelope]] = []
        others: list[tuple[Handler, EventEnvelope]] = []
        for env in envelopes:
            for handler in (projection.handlers.get(env.type), projection.every):
                if handler is None:
                    continue
                if isinstance(handler, Insert):
                    if others:
                        await self._handle(cur, projection, others, batch)
                        others = []
                    inserts.append((handler, env))
                else:
                    if inserts:
                        await self._insert(cur, inserts, batch)
                        inserts = []
                    others.append((handler, env))
        if inserts:
            await self._insert(cur, inserts, batch)
        if others:
            await self._handle(cur, projection, others, batch)

    async def _handle(
        self,
        cur: Cursor,
        projection: Projection,
        steps: list[tuple[Handler, EventEnvelope]],
        batch: Batch,
    ) -> None:
        """Other handlers as live, pipelined (they may read their tables: indexes first)."""
        await self.indexes.build(cur, projection.tables)
        async with self.conn.pipeline():
            for handler, env in steps:
                await handler(cur, env, batch)

    async def _insert(
        self, cur: Cursor, steps: list[tuple[Insert, EventEnvelope]], batch: Batch
    ) -> None:
        """A run of Insert handlers: the most frequent one streams into a COPY as its rows are
        made, the others' rows are kept and written after (inserts commute)."""
        counts: dict[Insert, int] = {}
        for insert, _ in steps:
            counts[insert] = counts.get(insert, 0) + 1
        main = max(counts, key=counts.__getitem__)
        kept: dict[Insert, list[tuple[Any, ...]]] = {i: [] for i in counts if i is not main}
        async with _Rows(cur, main, self._copying(main, counts[main])) as out:
            for insert, env in steps:
                row = insert.row(env, batch)
                if row is None:
                    continue
                if insert is main:
                    await out.write(row)
                else:
                    kept[insert].append(row)
        for insert, rows in kept.items():
            async with _Rows(cur, insert, self._copying(insert, len(rows))) as out:
                for row in rows:
                    await out.write(row)

    def _copying(self, insert: Insert, rows: int) -> bool:
        """COPY only into an emptied table (an existing row there would fail it)."""
        if insert.table not in self.emptied:
            return False
        return rows >= COPY_MIN or insert.table in self.indexes.dropped


class _Rows:
    """Rows into one table: streamed into a COPY, or (a few) inserted as live, pipelined."""

    def __init__(self, cur: Cursor, insert: Insert, copying: bool) -> None:
        self.cur = cur
        self.insert = insert
        self.copying = copying
        self.stack = AsyncExitStack()
        self.copy: AsyncCopy | None = None

    async def __aenter__(self) -> _Rows:
        await self.stack.__aenter__()
        if self.copying:
            columns = ", ".join(self.insert.columns.split())
            self.copy = await self.stack.enter_async_context(
                self.cur.copy(f"COPY {self.insert.table} ({columns}) FROM STDIN")
            )
        else:
            await self.stack.enter_async_context(self.cur.connection.pipeline())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stack.__aexit__(*exc)

    async def write(self, row: tuple[Any, ...]) -> None:
        if self.copy is not None:
            await self.copy.write_row(row)
        else:
            await self.cur.execute(self.insert.statement, row)


def _inserts(projection: Projection) -> list[Insert]:
    handlers = [*projection.handlers.values(), projection.every]
    return [h for h in handlers if isinstance(h, Insert)]


@dataclass
class _Indexes:
    """Indexes (and unique or primary-key constraints) of tables filled only by COPY: dropped
    while the tables fill, built once after. A repeated key fails the build, as the COPY would
    have; a table another table's foreign key refers to keeps its indexes."""

    #: table → the statements that build its dropped indexes again
    dropped: dict[str, list[str]] = field(default_factory=dict)

    async def drop(self, cur: Cursor, tables: Iterable[str]) -> None:
        for table in tables:
            await cur.execute(_INDEXES, {"table": table})
            rows = await cur.fetchall()
            for drop, _ in rows:
                await cur.execute(drop)
            if rows:
                self.dropped[table] = [build for _, build in rows]
        if self.dropped:
            await cur.execute(_MAINTENANCE_MEMORY)

    async def build(self, cur: Cursor, tables: Iterable[str]) -> None:
        """Build the dropped indexes of these tables (those that still are)."""
        for table in list(tables):
            for statement in self.dropped.pop(table, []):
                await cur.execute(statement)


#: (drop, build) statements of a table's indexes, constraints first; none if a foreign key
#: refers to the table.
_INDEXES = """
SELECT drop_it, build_it FROM (
    SELECT 1 AS kind,
           format('ALTER TABLE %%s DROP CONSTRAINT %%I', c.conrelid::regclass, c.conname)
               AS drop_it,
           format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', c.conrelid::regclass, c.conname,
                  pg_get_constraintdef(c.oid)) AS build_it
    FROM pg_constraint c WHERE c.conrelid = %(table)s::regclass AND c.contype IN ('p', 'u')
    UNION ALL
    SELECT 2, format('DROP INDEX %%s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
    FROM pg_index i WHERE i.indrelid = %(table)s::regclass
      AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
) statements
WHERE NOT EXISTS (
    SELECT FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = %(table)s::regclass
)
ORDER BY kind
"""
#: Index builds sort in memory up to this (only ever raised, for this transaction).
_MAINTENANCE_MEMORY = """
SELECT set_config('maintenance_work_mem', '256MB', true)
WHERE (SELECT setting::bigint FROM pg_settings WHERE name = 'maintenance_work_mem') < 262144
"""
