"""`pearl projections rebuild`: wire the event store to `projections.rebuild`."""

from __future__ import annotations

import psycopg

from contracts.envelope import EventEnvelope
from domain.wire import to_envelope
from projections.rebuild import rebuild, rebuild_some
from services.runtime import build_app
from services.settings import Settings


async def rebuild_read_models(settings: Settings, names: list[str] | None = None) -> int:
    _, database_url = settings.require_urls()
    app = build_app(settings)

    def read_batch(after: int, limit: int) -> list[EventEnvelope]:
        notes = app.recorder.select_notifications(after + 1, limit)
        return [to_envelope(app.mapper.to_domain_event(n), n.id) for n in notes]

    try:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            if names:
                return await rebuild_some(conn, names, read_batch)
            return await rebuild(conn, read_batch)
    finally:
        app.close()
