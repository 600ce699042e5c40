"""Shared fixtures: one database and one subject root per test session, removed afterwards."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest

from services import telemetry
from services.bus import delete_streams
from services.runtime import migrate, subjects_of
from services.settings import Settings
from tests.support.infra import Servers, create_database, drop_database, servers, unique_name
from tests.support.stack import Stack, running_stack

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="fault-injection suites at full size (20,000 commands); also PEARL_LONG=1",
    )


@pytest.fixture(scope="session")
def long_run(request: pytest.FixtureRequest) -> bool:
    """Whether the fault suites run at full size (`--long` or `PEARL_LONG=1`)."""
    import os

    return bool(request.config.getoption("--long")) or os.environ.get("PEARL_LONG") == "1"


def samples_dir() -> Path:
    import os

    env = os.environ.get("PEARL_SAMPLES_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "samples" / "scans"


@pytest.fixture(scope="session")
def infra() -> Iterator[Servers]:
    with servers() as found:
        yield found


@contextlib.asynccontextmanager
async def provisioned(infra: Servers) -> AsyncIterator[Settings]:
    """Settings pointing at a new database and subject root, migrated, removed afterwards."""
    dbname = unique_name("pearl_test_")
    database_url = await asyncio.to_thread(create_database, infra.postgres, dbname)
    root = unique_name("t")
    s = Settings(
        nats_url=infra.nats,
        database_url=database_url,
        subject_root=root,
        read_wait_max_seconds=15.0,
        db_pool_size=4,
    )
    try:
        await migrate(s)
        yield s
    finally:
        nc = await nats.connect(infra.nats)
        try:
            await delete_streams(nc.jetstream(), subjects_of(s))
        finally:
            await nc.close()
        await asyncio.to_thread(drop_database, infra.postgres, dbname)


@pytest.fixture(scope="session")
async def settings(infra: Servers) -> AsyncIterator[Settings]:
    """The session's shared database and subject root."""
    async with provisioned(infra) as s:
        yield s


@pytest.fixture
async def fresh_settings(infra: Servers) -> AsyncIterator[Settings]:
    """A database and subject root of this test's own (for tests that run processes)."""
    async with provisioned(infra) as s:
        yield s


@pytest.fixture(scope="module")
async def own_stack(infra: Servers) -> AsyncIterator[Stack]:
    """A stack with a database and subject root of the module's own: for tests that tamper with
    the history on purpose or flood it with generated input, so the shared one stays intact."""
    telemetry.setup("tests", "WARNING")
    async with provisioned(infra) as s, running_stack(s) as running:
        yield running


@pytest.fixture(scope="session")
async def stack(settings: Settings) -> AsyncIterator[Stack]:
    telemetry.setup("tests", "WARNING")
    async with running_stack(settings) as running:
        yield running
