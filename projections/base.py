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


@dataclass(frozen=True, slots=True)
class Projection:
    """A read model: `handlers` maps event `type` to a coroutine writing its rows."""

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
