"""What every projection is: a name, the event types it cares about, and an async apply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncCursor

from contracts.envelope import EventEnvelope

Cursor = AsyncCursor[Any]
Handler = Callable[[Cursor, EventEnvelope], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Projection:
    """A read model: `handlers` maps event `type` to a coroutine writing its rows."""

    name: str
    tables: tuple[str, ...]
    handlers: dict[str, Handler]
    #: Called for every event (after type handlers); used by the audit trail.
    every: Handler | None = None

    async def apply(self, cur: Cursor, env: EventEnvelope) -> None:
        handler = self.handlers.get(env.type)
        if handler is not None:
            await handler(cur, env)
        if self.every is not None:
            await self.every(cur, env)
