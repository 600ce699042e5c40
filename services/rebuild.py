"""`pearl projections rebuild`: wire the event store to `projections.rebuild`."""

from __future__ import annotations

import msgspec
import psycopg
from psycopg.types.json import set_json_dumps

from projections.rebuild import rebuild, rebuild_some
from services.event_log import EventLog, Prefetch, gc_paused
from services.runtime import build_app
from services.settings import Settings


async def rebuild_read_models(settings: Settings, names: list[str] | None = None) -> int:
    _, database_url = settings.require_urls()
    app = build_app(settings)
    try:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            # jsonb columns hold the same value whichever encoder wrote the text; msgspec's is fast
            set_json_dumps(msgspec.json.encode, context=conn)
            with gc_paused(), Prefetch(EventLog(app).read) as read:
                if names:
                    return await rebuild_some(conn, names, read)
                return await rebuild(conn, read)
    finally:
        app.close()
