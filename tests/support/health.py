"""After hostile input: the projections reach the store head and every audit chain verifies."""

from __future__ import annotations

import asyncio

from projections import queries
from services.audit_verify import Job, verify
from tests.support.helpers import eventually
from tests.support.stack import Stack


def store_head(stack: Stack) -> int:
    return stack.app.position


async def assert_history_intact(stack: Stack, timeout: float = 30.0) -> int:
    """Wait until the checkpoint reaches the store head, then verify the audit chains to it."""
    head = store_head(stack)

    async def caught_up() -> bool:
        return await queries.position(stack.pool) >= head

    await eventually(caught_up, timeout=timeout)
    _, database_url = stack.settings.require_urls()
    job = Job(database_url, ("public", "pearl_events"), None, None, head)
    checked, bad = await asyncio.to_thread(verify, job, dict, stack.app.mapper, 1)
    assert bad is None, f"audit chain broken at position {bad}"
    assert checked > 0
    return head
