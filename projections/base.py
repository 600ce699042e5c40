"""What every projection is: a name, the event types it cares about, and an async apply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncCursor

from contracts.envelope import EventEnvelope

Cursor = AsyncCursor[Any]


@dataclass
class Batch:
    """State shared by the projections while one batch is applied (saves a read per event)."""

    #: aggregate id → project id (None when the aggregate belongs to no project)
    scope: dict[str, str | None] = field(default_factory=dict)
    #: org → (seq, hash) of the audit chain's head, as the batch moves it
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: orgs whose head moved in this batch → position of their last entry
    moved: dict[str, int] = field(default_factory=dict)


Handler = Callable[[Cursor, EventEnvelope, Batch], Awaitable[None]]
#: The one row an event inserts (None: this event inserts nothing).
RowOf = Callable[[EventEnvelope, Batch], tuple[Any, ...] | None]


@dataclass(frozen=True, slots=True, eq=False)
class Insert:
    """A handler that only inserts one new row per event, declared as data so that a replay
    into emptied tables can COPY the rows in bulk (`projections.rebuild`); live it runs as
    `INSERT … ON CONFLICT (key) DO NOTHING`. Declare one only where the key cannot repeat in
    the store (an aggregate's creation, a store position): a COPY would fail on a repeat."""

    table: str
    #: the columns, space-separated, in the order of the row's values
    columns: str
    row: RowOf
    #: the conflict target of the live INSERT (None: a repeat is an error there too)
    key: str | None = "id"
    statement: str = field(init=False)

    def __post_init__(self) -> None:
        names = self.columns.split()
        values = ", ".join(["%s"] * len(names))
        conflict = f" ON CONFLICT ({self.key}) DO NOTHING" if self.key else ""
        columns = ", ".join(names)
        statement = f"INSERT INTO {self.table} ({columns}) VALUES ({values})"  # noqa: S608
        object.__setattr__(self, "statement", statement + conflict)

    async def __call__(self, cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
        row = self.row(env, batch)
        if row is not None:
            await cur.execute(self.statement, row)


async def update_once(
    cur: Cursor, table: str, sets: str, env: EventEnvelope, *values: Any, column: str = "version_no"
) -> None:
    """Set columns of one aggregate's row, once: only when the event is newer than the row
    (`column` holds the aggregate version last applied), so a replay changes nothing."""
    await cur.execute(
        f"UPDATE {table} SET {sets}, {column} = %s"  # noqa: S608 - constant names only
        f" WHERE id = %s AND {column} < %s",
        (*values, env.aggregateversion, env.aggregateid, env.aggregateversion),
    )


@dataclass(frozen=True, slots=True)
class Projection:
    """A read model: `handlers` maps event `type` to a coroutine writing its rows.

    Handlers read and write only the projection's own `tables` (and the batch context): a
    rebuild applies a batch one projection after the other (`projections.rebuild`).
    """

    name: str
    tables: tuple[str, ...]
    handlers: dict[str, Handler]
    #: Called for every event (after type handlers); used by the audit trail.
    every: Handler | None = None

    async def apply(self, cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
        handler = self.handlers.get(env.type)
        if handler is not None:
            await handler(cur, env, batch)
        if self.every is not None:
            await self.every(cur, env, batch)
