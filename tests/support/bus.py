"""Reading the dead-letter stream in tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError

from tests.support.helpers import eventually
from tests.support.stack import Stack


async def dlq_messages(stack: Stack, limit: int = 1000) -> list[Any]:
    """Every message in the stack's dead-letter stream (a fresh ephemeral consumer each call)."""
    js = stack.nc.jetstream()
    sub = await js.pull_subscribe(stack.subjects.all_dlq, stream=stack.subjects.dlq_stream)
    try:
        return list(await sub.fetch(limit, timeout=1.0))
    except (NatsTimeoutError, TimeoutError):
        return []
    finally:
        await sub.unsubscribe()


async def dead_lettered(stack: Stack, marker: str) -> Any:
    """The one DLQ entry whose body holds `marker` (an envelope id), once it is there."""
    return await dead_lettered_where(stack, lambda m: marker.encode() in m.data)


async def dead_lettered_where(stack: Stack, match: Callable[[Any], bool]) -> Any:
    """The one DLQ entry `match` picks, once it is there."""

    async def parked() -> list[Any]:
        return [m for m in await dlq_messages(stack) if match(m)]

    [msg] = await eventually(parked)
    return msg
