"""Apply batches of events to every read model in one transaction with the checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from psycopg import AsyncConnection, Rollback

from contracts.envelope import EventEnvelope
from projections import agents, api_keys, audit, findings, governance, orgs, scans, scope, targets
from projections.base import Batch, Cursor, Projection

log = logging.getLogger(__name__)

#: Order matters: scope first (others look it up), audit last.
PROJECTIONS: tuple[Projection, ...] = (
    scope.PROJECTION,
    orgs.PROJECTION,
    findings.PROJECTION,
    scans.PROJECTION,
    api_keys.PROJECTION,
    targets.PROJECTION,
    governance.PROJECTION,
    agents.PROJECTION,
    audit.PROJECTION,
)
CHECKPOINT = "read_models"
#: The role API reads run as; row-level security scopes it to `current_setting('pearl.org')`.
READER_ROLE = "pearl_reader"
POLICY = "pearl_org_isolation"


@dataclass(frozen=True, slots=True)
class Item:
    """One delivered event: its JetStream stream sequence (None when replayed from the store)."""

    stream_seq: int | None
    envelope: EventEnvelope | None  # None: undecodable, skipped but still passed over


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """How many items were applied or were duplicates; `gap_at` is the first item not handled."""

    applied: int
    duplicates: int
    gap_at: int | None
    position: int


async def migrate(conn: AsyncConnection[Any]) -> None:
    """Create the read-model tables, then row-level security over them (idempotent)."""
    folder = resources.files("projections.migrations")
    names = sorted(f.name for f in folder.iterdir() if f.name.endswith(".sql"))
    async with conn.transaction():
        for name in names:
            await conn.execute(folder.joinpath(name).read_text())
        await conn.execute(_CREATE_ROLE)
        for statement in row_security_statements():
            await conn.execute(statement)


_CREATE_ROLE = f"""
DO $$ BEGIN
    CREATE ROLE {READER_ROLE} NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
"""


def row_security_statements() -> list[str]:
    """GRANT SELECT to the reader on every read model and enable the org isolation policy."""
    statements = [
        f"GRANT SELECT ON projection_checkpoint TO {READER_ROLE}",
        f"GRANT SELECT ON projection_failure TO {READER_ROLE}",
    ]
    for table in all_tables():
        statements += [
            f"GRANT SELECT ON {table} TO {READER_ROLE}",
            f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS {POLICY} ON {table}",
            f"CREATE POLICY {POLICY} ON {table} FOR SELECT TO {READER_ROLE} USING ("
            "org = current_setting('pearl.org', true)"
            " OR current_setting('pearl.org', true) = '*')",
        ]
    return statements


async def apply_batch(conn: AsyncConnection[Any], items: Sequence[Item]) -> BatchOutcome:
    """Apply items in stream order, exactly once, and move the checkpoint, in one transaction.

    An item at or below the checkpoint was applied before (a redelivery) and is skipped. An item
    whose stream sequence is beyond the next expected one means an earlier one is still pending
    redelivery: nothing from there on is applied, so no event is ever applied out of order.
    """
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO projection_checkpoint (name) VALUES (%s) ON CONFLICT DO NOTHING",
            (CHECKPOINT,),
        )
        await cur.execute(
            "SELECT position, stream_seq FROM projection_checkpoint WHERE name = %s FOR UPDATE",
            (CHECKPOINT,),
        )
        row = await cur.fetchone()
        assert row is not None
        position, last_seq = row
        chosen = select(items, position, last_seq)
        await apply_events(conn, cur, chosen.envelopes, PROJECTIONS)
        await cur.execute(
            "UPDATE projection_checkpoint SET position = %s, stream_seq = %s WHERE name = %s",
            (chosen.position, chosen.last_seq, CHECKPOINT),
        )
        if chosen.position > position:
            await cur.execute("DELETE FROM projection_failure WHERE name = %s", (CHECKPOINT,))
    return BatchOutcome(len(chosen.envelopes), chosen.duplicates, chosen.gap_at, chosen.position)


@dataclass
class Selection:
    """Which delivered items to apply, in order, and where the checkpoint moves."""

    envelopes: list[EventEnvelope]
    duplicates: int
    gap_at: int | None
    position: int
    last_seq: int | None


def select(items: Sequence[Item], position: int, last_seq: int | None) -> Selection:
    """Skip what was applied before; stop at a stream-sequence gap (still pending redelivery)."""
    chosen = Selection([], 0, None, position, last_seq)
    for index, item in enumerate(items):
        seq = item.stream_seq
        if seq is not None and chosen.last_seq is not None:
            if seq <= chosen.last_seq:
                chosen.duplicates += 1
                continue
            if seq != chosen.last_seq + 1:
                chosen.gap_at = index
                break
        env = item.envelope
        if env is None or env.position <= chosen.position:
            chosen.duplicates += 1
        else:
            chosen.envelopes.append(env)
            chosen.position = env.position
        if seq is not None:
            chosen.last_seq = seq
    return chosen


async def apply_events(
    conn: AsyncConnection[Any],
    cur: Cursor,
    envelopes: Sequence[EventEnvelope],
    projections: Sequence[Projection],
) -> None:
    """Apply events to the given read models in one pipeline, sharing one batch context."""
    if not envelopes:
        return
    batch = Batch()
    await scope.preload(cur, envelopes, batch)
    await audit.preload(cur, envelopes, batch)
    async with conn.pipeline():
        for env in envelopes:
            for projection in projections:
                await projection.apply(cur, env, batch)
        if audit.PROJECTION in projections:
            await audit.finish(cur, batch)


async def locate_failure(conn: AsyncConnection[Any], items: Sequence[Item]) -> tuple[str, int]:
    """Which read model fails on which event of a batch that failed to apply.

    The batch is applied again event by event and projection by projection, without a
    pipeline, in a transaction that is always rolled back. When nothing fails this time (the
    failure came from outside the handlers) the checkpoint and the batch's first event are named.
    """
    found: tuple[str, int] | None = None
    first = next((i.envelope.position for i in items if i.envelope is not None), 0)
    try:
        async with conn.transaction() as tx, conn.cursor() as cur:
            await cur.execute(
                "SELECT position, stream_seq FROM projection_checkpoint WHERE name = %s",
                (CHECKPOINT,),
            )
            row = await cur.fetchone()
            position, last_seq = row if row else (0, None)
            chosen = select(items, position, last_seq)
            if chosen.envelopes:
                first = chosen.envelopes[0].position
            batch = Batch()
            await scope.preload(cur, chosen.envelopes, batch)
            await audit.preload(cur, chosen.envelopes, batch)
            for env in chosen.envelopes:
                for projection in PROJECTIONS:
                    try:
                        await projection.apply(cur, env, batch)
                    except Exception:
                        found = (projection.name, env.position)
                        raise Rollback(tx) from None
            try:
                await audit.finish(cur, batch)
            except Exception:
                found = (audit.PROJECTION.name, chosen.envelopes[-1].position)
                raise Rollback(tx) from None
            raise Rollback(tx)
    except Exception:  # the connection itself failed: name the batch
        log.debug("could not locate the failing projection", exc_info=True)
    return found or (CHECKPOINT, first)


async def replay_into(
    conn: AsyncConnection[Any], envelopes: Sequence[EventEnvelope], chosen: Sequence[Projection]
) -> None:
    """Apply events to some read models only (a partial rebuild); no checkpoint is moved."""
    async with conn.cursor() as cur:
        await apply_events(conn, cur, envelopes, chosen)


async def checkpoint(conn: AsyncConnection[Any]) -> int:
    """The event-store position the read models have reached."""
    cur = await conn.execute(
        "SELECT position FROM projection_checkpoint WHERE name = %s", (CHECKPOINT,)
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def all_tables() -> Iterable[str]:
    for projection in PROJECTIONS:
        yield from projection.tables


async def reset(conn: AsyncConnection[Any]) -> None:
    """Empty every read model and the checkpoint, before a rebuild."""
    tables = ", ".join([*all_tables(), "projection_checkpoint", "projection_failure"])
    async with conn.transaction():
        await conn.execute(f"TRUNCATE {tables}")
