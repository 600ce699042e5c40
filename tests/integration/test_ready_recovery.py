"""`/ready` follows its dependencies: 503 within moments of PostgreSQL or NATS going away, 200
within seconds of it returning. Each test restarts servers of its own (never the machine's)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services import telemetry
from services.embedded import EmbeddedNats, EmbeddedPostgres, find_free_port
from services.runtime import migrate
from services.settings import Settings
from tests.support.infra import Servers, create_database, drop_database, unique_name
from tests.support.stack import running_stack

pytestmark = pytest.mark.integration
#: the promise: ready again this long after the dependency accepts connections
RECOVERY_SECONDS = 5.0


async def _time_until(http: httpx.AsyncClient, status: int, timeout: float) -> float:
    """Seconds until `/ready` answers `status` (polled every 50 ms; each probe is timed too)."""
    t0 = time.monotonic()
    while True:
        probe = time.monotonic()
        r = await http.get("/ready")
        assert time.monotonic() - probe < 3.0, "a readiness probe must never hang"
        if r.status_code == status:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"/ready not {status} after {timeout}s: {r.json()}")
        await asyncio.sleep(0.05)


async def _fill(pool: Any) -> None:
    """Open every connection the pool may hold (as a burst of concurrent reads does)."""
    all_held = asyncio.Barrier(pool.max_size + 1)

    async def hold() -> None:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
            await all_held.wait()  # every one holds its connection until all have one

    tasks = [asyncio.create_task(hold()) for _ in range(pool.max_size)]
    async with asyncio.timeout(10):
        await all_held.wait()
    await asyncio.gather(*tasks)


@contextlib.asynccontextmanager
async def _provisioned(postgres: str, nats_url: str) -> AsyncIterator[Settings]:
    dbname = unique_name("pearl_ready_")
    url = await asyncio.to_thread(create_database, postgres, dbname)
    settings = Settings(
        nats_url=nats_url, database_url=url, subject_root=unique_name("r"), db_pool_size=4
    )
    try:
        await migrate(settings)
        yield settings
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(drop_database, postgres, dbname)


async def test_ready_returns_within_seconds_of_a_postgresql_restart(infra: Servers, tmp_path: Path):
    telemetry.setup("tests", "WARNING")
    pg = EmbeddedPostgres(tmp_path / "pg", port=find_free_port())
    admin = await asyncio.to_thread(pg.start)
    try:
        async with (
            _provisioned(admin, infra.nats) as settings,
            running_stack(settings) as stack,
        ):
            assert await _time_until(stack.http, 200, 15) < 15
            await _fill(stack.pool)  # every connection the pool may have is open, as under load
            await asyncio.to_thread(pg.stop)
            down = await _time_until(stack.http, 503, 10)
            assert down < 3.0
            # a 12 s outage, probed as a load balancer would; a pool that backs off exponentially
            # would next try to reconnect about 16 s after the outage began
            for _ in range(12):
                await asyncio.sleep(1)
                assert (await stack.http.get("/ready")).status_code == 503
            await asyncio.to_thread(pg.start)  # returns once PostgreSQL accepts connections
            recovered = await _time_until(stack.http, 200, 30)
            print(f"postgres restart: 503 after {down:.2f}s, ready {recovered:.2f}s after return")
            assert recovered < RECOVERY_SECONDS
            r = await stack.http.get("/v1/whoami", headers=stack.admin)
            assert r.status_code == 200
    finally:
        await asyncio.to_thread(pg.stop)


async def test_ready_follows_a_nats_restart(infra: Servers, tmp_path: Path):
    telemetry.setup("tests", "WARNING")
    server = EmbeddedNats(tmp_path / "nats", port=find_free_port())
    nats_url = await asyncio.to_thread(server.start)
    try:
        async with (
            _provisioned(infra.postgres, nats_url) as settings,
            # the API alone: the bus consumers' own reconnection is not what this measures
            running_stack(settings, workers=False) as stack,
        ):
            assert await _time_until(stack.http, 200, 15) < 15
            await asyncio.to_thread(server.stop)
            down = await _time_until(stack.http, 503, 10)
            assert down < 3.0
            body = (await stack.http.get("/ready")).json()
            assert body["checks"]["nats"] == "unavailable"
            await asyncio.to_thread(server.start)
            recovered = await _time_until(stack.http, 200, 30)
            print(f"nats restart: 503 after {down:.2f}s, ready {recovered:.2f}s after return")
            assert recovered < RECOVERY_SECONDS
    finally:
        await asyncio.to_thread(server.stop)
