"""Composition root: builds each process from settings; nothing connects at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import psycopg
import psycopg_pool.base
import psycopg_pool.pool
import psycopg_pool.pool_async
from psycopg_pool import AsyncConnectionPool

from contracts.subjects import Subjects
from domain.pearl_app import PearlApp
from projections.runner import migrate as migrate_read_models
from services.bus import connect, ensure_streams
from services.reports import ReportStore
from services.settings import Settings, redact

log = logging.getLogger(__name__)


#: The longest a connection pool waits between two tries to reach PostgreSQL again.
POOL_RETRY_MAX_S = 1.0


class _CappedBackoff(psycopg_pool.base.AttemptWithBackoff):
    """psycopg_pool's back-off (reconnecting, and re-checking connections found broken) starts
    at 1 s and doubles without bound, so after a PostgreSQL restart a process could wait 8 or
    16 s more; here it starts at 10 ms (a pool of N connections broken by the restart is
    through its checks in about a second) and never waits more than `POOL_RETRY_MAX_S`."""

    INITIAL_DELAY = 0.01

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, POOL_RETRY_MAX_S)


def cap_pool_backoff() -> None:
    """Every psycopg pool of this process (the event store's and the read pools) retries
    PostgreSQL at least once a second (idempotent)."""
    psycopg_pool.pool.AttemptWithBackoff = _CappedBackoff  # type: ignore[attr-defined]
    psycopg_pool.pool_async.AttemptWithBackoff = _CappedBackoff  # type: ignore[attr-defined]


def build_app(settings: Settings, *, create_tables: bool = False) -> PearlApp:
    cap_pool_backoff()
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


def read_pool(
    database_url: str, size: int = 8, reconnect_seconds: float = 2.0
) -> AsyncConnectionPool[Any]:
    """The pool reads run on. Connections are checked when taken (one left over from before a
    PostgreSQL restart is replaced, not handed out), and a failed reconnection is given up after
    `reconnect_seconds` instead of backing off for minutes, so the next request connects afresh:
    reads recover within seconds of PostgreSQL returning."""
    cap_pool_backoff()
    return AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=size,
        open=False,
        kwargs={"autocommit": True, "connect_timeout": 2},
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=reconnect_seconds,
    )


async def run_api(settings: Settings) -> None:
    import uvicorn

    from services.api.app import create_app
    from services.api.context import ApiContext

    nats_url, database_url = settings.require_urls()
    app = build_app(settings)
    pool = read_pool(database_url, settings.db_pool_size, settings.db_reconnect_seconds)
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
