"""Where each projection stands: its checkpoint, the store head, the lag, and any failure.

A projector that cannot apply a batch records a `Failure` (in its own transaction, so that it
survives the rolled-back batch); `runner.apply_batch` removes it when the checkpoint moves again.
Read by the API's `/ready` and `/metrics` and by `pearl projections status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.sql import SQL, Identifier

from projections.runner import CHECKPOINT

#: Longest error text kept (a failure names the error, it does not archive it).
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class Failure:
    """A batch of checkpoint `name` failed in read model `projection` at store `position`."""

    name: str
    projection: str
    position: int
    error: str
    attempts: int = 1
    first_failed_at: datetime | None = None
    last_failed_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str, int, str]:
        """What makes two failures the same failure (for logging it once)."""
        return (self.name, self.projection, self.position, self.error)

    def describe(self) -> str:
        return (
            f"projection {self.projection} ({self.name}) failed at position {self.position}: "
            f"{self.error}"
        )


@dataclass(frozen=True, slots=True)
class CheckpointState:
    name: str
    position: int
    lag: int
    failure: Failure | None


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """The store head and every checkpoint, read in one snapshot."""

    head: int
    checkpoints: list[CheckpointState]


def error_text(exc: BaseException) -> str:
    """A one-line, bounded description of an exception, safe to store and show (`/ready` is
    public): for a PostgreSQL error its primary message only, whose DETAIL and CONTEXT may
    quote the data (the full error goes to the projector's log)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = " ".join(str(primary or exc).split()) or "(no message)"
    text = f"{type(exc).__name__}: {text}".replace("\x00", "\\x00")
    return text[:MAX_ERROR_CHARS]


async def record_failure(conn: AsyncConnection[Any], failure: Failure) -> int:
    """Insert or refresh the failure row (autocommitted on its own); returns the attempt count.

    The same failure again counts one more attempt; a different one starts afresh.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO projection_failure (name, projection, position, error)"
            " VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET"
            " attempts = CASE WHEN (projection_failure.projection, projection_failure.position,"
            "   projection_failure.error) = (EXCLUDED.projection, EXCLUDED.position,"
            "   EXCLUDED.error) THEN projection_failure.attempts + 1 ELSE 1 END,"
            " first_failed_at = CASE WHEN (projection_failure.projection,"
            "   projection_failure.position, projection_failure.error) = (EXCLUDED.projection,"
            "   EXCLUDED.position, EXCLUDED.error) THEN projection_failure.first_failed_at"
            "   ELSE now() END,"
            " projection = EXCLUDED.projection, position = EXCLUDED.position,"
            " error = EXCLUDED.error, last_failed_at = now()"
            " RETURNING attempts",
            (failure.name, failure.projection, failure.position, failure.error),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 1


async def read_status(
    conn: AsyncConnection[Any], events_table: str = "pearl_events"
) -> StoreStatus:
    """The store head, each checkpoint's position and lag, and the failures, in one snapshot."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        await cur.execute(
            SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(Identifier(events_table))
        )
        row = await cur.fetchone()
        head = int(row[0]) if row else 0
        await cur.execute("SELECT name, position FROM projection_checkpoint ORDER BY name")
        positions = {str(name): int(position) for name, position in await cur.fetchall()}
        await cur.execute(
            "SELECT name, projection, position, error, attempts, first_failed_at,"
            " last_failed_at FROM projection_failure"
        )
        failures = {str(r[0]): Failure(*r) for r in await cur.fetchall()}
    names = sorted({CHECKPOINT, *positions, *failures})
    return StoreStatus(
        head,
        [
            CheckpointState(
                name, positions.get(name, 0), head - positions.get(name, 0), failures.get(name)
            )
            for name in names
        ],
    )
