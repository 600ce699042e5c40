"""The relay survives its NATS server dying mid-batch: kill -9 nats-server while the relay has
acks in flight, start it again on the same port and store, keep appending — every event is in
the stream exactly once, in store order, within a bound, without touching the relay."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest

from contracts.commands import CreateOrg, CreateProject, RecordFinding
from domain.pearl_app import PearlApp
from services.bus import connect
from services.embedded import EmbeddedNats, find_free_port
from services.relay import Relay, stream_position
from services.runtime import build_app, migrate, subjects_of
from services.settings import Settings
from tests.support.helpers import eventually
from tests.support.infra import Servers, create_database, drop_database, unique_name

pytestmark = pytest.mark.integration


@dataclass
class World:
    settings: Settings
    nats: EmbeddedNats
    app: PearlApp
    project: UUID
    principal: object

    def append(self, start: int, stop: int) -> None:
        for i in range(start, stop):
            cmd = RecordFinding(
                tool="semgrep",
                rule_id=f"r{i % 5}",
                title=f"finding {i}",
                severity="low",
                path=f"src/{i}.py",
                fingerprint=f"relay-{i:06d}",
            )
            self.app.record_finding(self.principal, self.project, cmd)  # type: ignore[arg-type]

    @property
    def head(self) -> int:
        return self.app.position


@contextlib.asynccontextmanager
async def own_nats_world(infra: Servers, home: Path) -> AsyncIterator[World]:
    """A NATS server of this test's own (we kill it), a database of its own."""
    nats = EmbeddedNats(home, port=find_free_port())
    dbname = unique_name("pearl_relay_")
    database_url = await asyncio.to_thread(create_database, infra.postgres, dbname)
    try:
        url = await asyncio.to_thread(nats.start)
        settings = Settings(nats_url=url, database_url=database_url, subject_root=unique_name("r"))
        await migrate(settings)
        app = await asyncio.to_thread(build_app, settings)
        token = app.bootstrap_admin_key()
        admin = app.authenticate(token)
        app.create_org(admin, CreateOrg(slug="acme", name="Acme"))
        project = app.create_project(admin, "acme", CreateProject(slug="p", name="P"))
        try:
            yield World(settings, nats, app, UUID(project.ids["id"]), admin)
        finally:
            app.close()
    finally:
        await asyncio.to_thread(nats.stop)
        await asyncio.to_thread(drop_database, infra.postgres, dbname)


async def stream_positions(world: World) -> list[int]:
    nc = await connect(world.settings.nats_url or "", "test-reader")
    try:
        js = nc.jetstream()
        info = await js.stream_info(subjects_of(world.settings).events_stream)
        positions = []
        for seq in range(1, info.state.last_seq + 1):
            msg = await js.get_msg(subjects_of(world.settings).events_stream, seq=seq)
            positions.append(int((msg.headers or {})["Pearl-Position"]))
        return positions
    finally:
        await nc.close()


@pytest.fixture
def server_home() -> Iterator[Path]:
    """Not under pytest's basetemp: other pytest sessions on the machine prune old basetemps,
    and would delete a running server's store."""
    path = Path(tempfile.mkdtemp(prefix="pearl-relay-nats-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_relay_publishes_everything_once_in_order_after_nats_is_killed_mid_batch(
    infra: Servers, server_home: Path
):
    async with own_nats_world(infra, server_home) as world:
        nc = await connect(world.settings.nats_url or "", "pearl-relay")
        relay = Relay(
            world.app,
            nc.jetstream(),
            subjects_of(world.settings),
            world.settings.database_url or "",
            batch_size=200,
            timeout=2.0,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        try:
            await asyncio.to_thread(world.append, 0, 50)

            async def published_head() -> bool:
                return relay.position == world.head

            await eventually(published_head, timeout=20)

            # a long run of appends, and NATS dies while the relay is publishing it
            appending = asyncio.create_task(asyncio.to_thread(world.append, 50, 1550))

            async def mid_stream() -> bool:
                return relay.position > 300

            await eventually(mid_stream, timeout=60)
            pid = world.nats.pid
            assert pid is not None
            # Freeze the server first, so publishes are certainly in flight (sent, never
            # answered) when it dies: their acks are lost for good.
            os.kill(pid, signal.SIGSTOP)

            async def acks_in_flight() -> bool:
                return relay.js.publish_async_pending() > 0

            await eventually(acks_in_flight, timeout=30, interval=0.01)
            os.kill(pid, signal.SIGKILL)

            async def dead() -> bool:
                return world.nats.exit_code is not None

            await eventually(dead, timeout=10)
            killed_at = relay.position
            await asyncio.to_thread(world.nats.restart)  # same port, same store dir
            restarted = time.monotonic()

            async def publishing_again() -> bool:
                return relay.position > killed_at

            await eventually(publishing_again, timeout=30)
            resumed_s = time.monotonic() - restarted
            await appending
            await asyncio.to_thread(world.append, 1550, 1600)

            await eventually(published_head, timeout=60)
            caught_up_s = time.monotonic() - restarted
            assert not task.done()
            positions = await stream_positions(world)
            store = [
                n.id
                for n in await asyncio.to_thread(
                    world.app.recorder.select_notifications, 1, world.head + 10
                )
            ]
            assert positions == store  # each once, in store order, none missing
            assert await stream_position(nc.jetstream(), subjects_of(world.settings)) == world.head
            assert relay.failures == 0  # it went on by itself
            print(
                f"\nrelay: killed at position {killed_at}, head {world.head}, "
                f"publishing again {resumed_s:.2f}s and caught up {caught_up_s:.2f}s after NATS "
                "restarted"
            )
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
            await nc.close()
