"""The scheduler's governance jobs: expire approval requests, exceptions and task leases, record
SLA breaches.

Each job reads what is due at the Application's clock from the read models and issues the
commands; the aggregates decide again whether each is really due, so a stale read or two
schedulers overlapping during a lease hand-over never expire anything early or twice.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from domain.errors import PearlError
from domain.pearl_app import PearlApp
from projections import governance_queries as gq
from projections import task_queries
from projections.queries import Pool, sla_due

log = logging.getLogger(__name__)
BATCH = 500


class Expiries:
    def __init__(self, app: PearlApp, pool: Pool) -> None:
        self.app = app
        self.pool = pool

    async def approvals(self) -> int:
        ids = await gq.approvals_due(self.pool, self.app.clock(), BATCH)
        return await self._each(self.app.expire_approval, ids)

    async def exceptions(self) -> int:
        ids = await gq.exceptions_due(self.pool, self.app.clock(), BATCH)
        return await self._each(self.app.expire_exception, ids)

    async def slas(self) -> int:
        ids = await sla_due(self.pool, self.app.clock(), 5 * BATCH)
        if not ids:
            return 0
        return await asyncio.to_thread(self.app.breach_slas, [UUID(str(i)) for i in ids])

    async def task_leases(self) -> int:
        """Take back packets whose lease ran out, or whose holder was paused meanwhile."""
        due = await task_queries.leases_to_end(self.pool, self.app.clock(), BATCH)
        done = 0
        for task_id, paused_agent in due:
            try:
                done += await asyncio.to_thread(
                    self.app.expire_task_lease, UUID(task_id), paused_agent
                )
            except PearlError as exc:
                log.warning("lease not ended", extra={"id": task_id, "reason": exc.detail})
        return done

    async def _each(self, command: object, ids: list[str]) -> int:
        done = 0
        for item in ids:
            try:
                done += bool(await asyncio.to_thread(command, UUID(str(item))))  # type: ignore[arg-type]
            except PearlError as exc:  # changed meanwhile; the next tick sees the new state
                log.warning("expiry not applied", extra={"id": str(item), "reason": exc.detail})
        return done
