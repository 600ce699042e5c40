"""Composition root: builds each process from settings; nothing connects at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from contracts.subjects import Subjects
from domain.pearl_app import PearlApp
from projections.runner import migrate as migrate_read_models
from services.bus import connect, ensure_streams
from services.reports import ReportStore
from services.settings import Settings, redact

log = logging.getLogger(__name__)


def build_app(settings: Settings, *, create_tables: bool = False) -> PearlApp:
    return PearlApp(env=settings.event_store_env(create_tables=create_tables))


def subjects_of(settings: Settings) -> Subjects:
    return Subjects(root=settings.subject_root)


async def migrate(settings: Settings) -> None:
    """Create the event store, read models and streams; idempotent, run before the processes."""
    nats_url, database_url = settings.require_urls()
    app = await asyncio.to_thread(build_app, settings, create_tables=True)
    app.close()
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await migrate_read_models(conn)
    nc = await connect(nats_url, "pearl-migrate")
    try:
        await ensure_streams(nc.jetstream(), subjects_of(settings), settings.stream_replicas)
        await ReportStore(nc.jetstream(), subjects_of(settings)).ensure()
    finally:
        await nc.close()
    log.info("migrated", extra={"database": redact(database_url), "nats": nats_url})


def stop_event() -> asyncio.Event:
    """An event set on SIGINT/SIGTERM, so every process shuts down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def run_relay(settings: Settings) -> None:
    from services.relay import Relay

    nats_url, database_url = settings.require_urls()
    app = build_app(settings)
    nc = await connect(nats_url, "pearl-relay")
    try:
        relay = Relay(
            app, nc.jetstream(), subjects_of(settings), database_url, settings.relay_batch_size
        )
        await relay.run(stop_event())
    finally:
        await nc.close()
        app.close()


async def run_projector(settings: Settings) -> None:
    from services.projector import Projector

    nats_url, database_url = settings.require_urls()
    nc = await connect(nats_url, "pearl-projector")
    try:
        projector = Projector(
            nc.jetstream(), subjects_of(settings), database_url, settings.projector_batch_size
        )
        await projector.run(stop_event())
    finally:
        await nc.close()


async def run_worker(settings: Settings) -> None:
    from services.worker import create_worker

    nats_url, _ = settings.require_urls()
    app = build_app(settings)
    from services.auth import Authenticator

    authenticate = Authenticator(settings, app).authenticate
    stream_app, _broker = create_worker(
        app, nats_url, subjects_of(settings), settings.worker_batch_size, authenticate
    )
    try:
        await stream_app.run()
    finally:
        app.close()


def read_pool(database_url: str, size: int = 8) -> AsyncConnectionPool[Any]:
    return AsyncConnectionPool(
        database_url, min_size=1, max_size=size, open=False, kwargs={"autocommit": True}
    )


async def run_api(settings: Settings) -> None:
    import uvicorn

    from services.api.app import create_app
    from services.api.context import ApiContext

    nats_url, database_url = settings.require_urls()
    app = build_app(settings)
    pool = read_pool(database_url, settings.db_pool_size)
    await pool.open()
    nc = await connect(nats_url, "pearl-api")
    reports = ReportStore(nc.jetstream(), subjects_of(settings))
    ctx = ApiContext(settings=settings, pearl=app, pool=pool, nc=nc, reports=reports)
    config = uvicorn.Config(
        create_app(ctx),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        await nc.close()
        await pool.close()
        app.close()
