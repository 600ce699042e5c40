"""Events as a PeaRL before the text rules could have stored them, written straight with SQL.

Before `contracts/text.py` and `domain/storable.py`, a NUL (the JSON escape `\\u0000`) or a
lone surrogate (`\\ud800`, as any `ensure_ascii` JSON writer spells it) could reach
`pearl_events`. Today's code refuses to write such an event, so the tests copy one it did
write and change its text in the stored state.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg


def poisoned(value: Any, marker: str, text: str) -> Any:
    """The stored state with `marker` replaced by `text` in every string (and key) holding it."""
    if isinstance(value, dict):
        return {poisoned(k, marker, text): poisoned(v, marker, text) for k, v in value.items()}
    if isinstance(value, list):
        return [poisoned(v, marker, text) for v in value]
    if isinstance(value, str):
        return value.replace(marker, text)
    return value


async def store_old_copy(
    url: str, position: int, marker: str, text: str, aggregate_id: uuid.UUID | None = None
) -> tuple[int, uuid.UUID]:
    """Insert a copy of the event at `position`, `marker` replaced by `text`, as a new aggregate
    (`aggregate_id`, or a random one); return its store position and aggregate id."""
    aggregate_id = aggregate_id or uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT originator_version, topic, state FROM pearl_events WHERE notification_id = %s",
            (position,),
        )
        row = await cur.fetchone()
        assert row is not None, f"no event at position {position}"
        version, topic, state = row
        original = json.loads(bytes(state))
        assert marker in json.dumps(original), f"{marker!r} is not in the event at {position}"
        # ensure_ascii: NUL as `\u0000`, a lone surrogate as `\ud800` (UTF-8 cannot carry it)
        poison = json.dumps(poisoned(original, marker, text), separators=(",", ":")).encode()
        cur = await conn.execute(
            "INSERT INTO pearl_events (originator_id, originator_version, topic, state)"
            " VALUES (%s, %s, %s, %s) RETURNING notification_id",
            (aggregate_id, version, topic, poison),
        )
        inserted = await cur.fetchone()
        assert inserted is not None
        return int(inserted[0]), aggregate_id
