"""A PeaRL stack inside the test's event loop: relay, projector and worker as asyncio tasks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from nats.aio.client import Client

from contracts.subjects import Subjects
from domain.pearl_app import PearlApp
from services.api.app import create_app
from services.api.context import ApiContext
from services.bus import connect
from services.gatekeeper import Gatekeeper
from services.projector import Projector
from services.relay import Relay
from services.reports import ReportStore
from services.runtime import build_app, read_pool, subjects_of
from services.settings import Settings
from services.worker import create_worker


@dataclass
class Stack:
    settings: Settings
    app: PearlApp
    nc: Client
    subjects: Subjects
    http: httpx.AsyncClient
    admin_token: str
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    pool: Any = None

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


@contextlib.asynccontextmanager
async def running_stack(settings: Settings, *, workers: bool = True) -> AsyncIterator[Stack]:
    """Start the API (in-process ASGI), and unless told not to, relay/projector/worker tasks."""
    nats_url, database_url = settings.require_urls()
    app = await asyncio.to_thread(build_app, settings)
    nc = await connect(nats_url, "pearl-api")  # as the API connects: reconnecting forever
    subjects = subjects_of(settings)
    pool = read_pool(database_url, 4)
    await pool.open()
    reports = ReportStore(nc.jetstream(), subjects)
    ctx = ApiContext(settings=settings, pearl=app, pool=pool, nc=nc, reports=reports)
    api = create_app(ctx)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    broker = None
    if workers:
        relay = Relay(app, nc.jetstream(), subjects, database_url, settings.relay_batch_size)
        projector = Projector(nc.jetstream(), subjects, database_url, settings.projector_batch_size)
        gatekeeper = Gatekeeper(app, pool, nc.jetstream(), subjects)
        tasks += [
            asyncio.create_task(relay.run(stop)),
            asyncio.create_task(projector.run(stop)),
            asyncio.create_task(gatekeeper.run(stop)),
        ]
        _, broker = create_worker(app, nats_url, subjects, settings.worker_batch_size)
        await broker.start()
    token = await asyncio.to_thread(app.bootstrap_admin_key, "test admin")
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://pearl.test") as http:
        stack = Stack(settings, app, nc, subjects, http, token, tasks, pool)
        try:
            yield stack
        finally:
            stop.set()
            if broker is not None:
                await broker.stop()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 5)
            await nc.close()
            await pool.close()
            app.close()
