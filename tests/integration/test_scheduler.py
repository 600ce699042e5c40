"""The scheduler against real NATS and PostgreSQL: one leader through a KV lease, its jobs.

Leases use a 1 s TTL, so a dead holder is replaced within a second or two.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from domain.pearl_app import PearlApp
from domain.targets_app import ScanTargetCommands
from projections import queries
from projections import targets as target_projection
from projections.queries import Pool
from projections.runner import PROJECTIONS
from services.lease import KvLease, lease_bucket
from services.runtime import read_pool, subjects_of
from services.scheduler import LEASE_KEY, AuditCheckpoints, Job, Scheduler, default_jobs
from services.settings import Settings
from tests.support.helpers import eventually, make_org_and_project
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
TTL = 1.0


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[Client]:
    client = await nats.connect(settings.require_urls()[0])
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def bucket(nc: Client, settings: Settings) -> AsyncIterator[str]:
    """The run's locks bucket, with a 1 s TTL; deleted after the test."""
    name = subjects_of(settings).locks_bucket
    try:
        yield name
    finally:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_key_value(name)


@pytest.fixture
async def kv(nc: Client, bucket: str) -> KeyValue:
    store, ttl = await lease_bucket(nc.jetstream(), bucket, TTL)
    assert ttl == TTL
    return store


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[Pool]:
    p = read_pool(settings.require_urls()[1], 2)
    await p.open()
    try:
        yield p
    finally:
        await p.close()


def lease(kv: KeyValue, owner: str) -> KvLease:
    return KvLease(kv, LEASE_KEY, owner, TTL)


async def test_only_one_instance_acquires_and_renewing_keeps_the_lease(kv: KeyValue) -> None:
    a, b = lease(kv, "a"), lease(kv, "b")

    assert await a.acquire()
    assert not await b.acquire()
    for _ in range(4):  # 1.6 s, longer than the TTL
        await asyncio.sleep(a.renew_every * 1.2)
        assert await a.renew()
        assert not await b.acquire()

    assert a.held and not b.held


async def test_another_instance_takes_over_a_ttl_after_the_holder_stops_renewing(
    kv: KeyValue,
) -> None:
    a, b = lease(kv, "a"), lease(kv, "b")
    assert await a.acquire()
    died = time.monotonic()

    await eventually(b.acquire, timeout=10, interval=0.1)

    assert time.monotonic() - died >= TTL * 0.9
    assert not a.held
    assert not await a.renew()  # its revision is gone: it knows it lost the lease
    await a.release()  # and releasing does not take it from the new holder
    assert await b.renew()


async def test_release_lets_another_instance_acquire_at_once(kv: KeyValue) -> None:
    a, b = lease(kv, "a"), lease(kv, "b")
    assert await a.acquire()

    await a.release()

    assert not a.held
    assert await b.acquire()  # over the delete marker, without waiting for the TTL
    assert not await a.acquire()


async def test_an_owner_finding_its_own_key_holds_the_lease(kv: KeyValue) -> None:
    first = lease(kv, "a")
    assert await first.acquire()

    again = lease(kv, "a")  # the same owner id, e.g. a retry after a lost reply

    assert await again.acquire()
    assert not await lease(kv, "b").acquire()


def counting_job() -> tuple[list[int], Job]:
    calls: list[int] = []

    async def fn() -> int:
        calls.append(1)
        return 1

    return calls, Job("count", 0, fn)


async def test_two_schedulers_run_a_job_on_one_only_until_it_dies(
    nc: Client, bucket: str, stack: Stack, pool: Pool
) -> None:
    schedulers = []
    counts = []
    for owner in ("first", "second"):
        calls, job = counting_job()
        lease = await KvLease.open(nc.jetstream(), bucket, TTL, LEASE_KEY, owner)
        schedulers.append(Scheduler(stack.app, pool, lease, [job], 0.1))
        counts.append(calls)
    first, second = schedulers

    for _ in range(6):  # 1.5 s, longer than the TTL
        await asyncio.sleep(0.25)
        assert await first.tick() == {"count": 1}
        died = time.monotonic()
        assert await second.tick() == {}
    assert (len(counts[0]), len(counts[1])) == (6, 0)

    # the first is killed: no more ticks, no release
    await eventually(second.tick, timeout=10, interval=0.1)

    assert time.monotonic() - died >= TTL * 0.9
    assert len(counts[0]) == 6 and len(counts[1]) == 1
    assert await first.tick() == {}


async def test_a_stopped_scheduler_releases_so_another_leads_at_once(
    nc: Client, bucket: str, stack: Stack, pool: Pool
) -> None:
    calls, job = counting_job()
    lease_a = await KvLease.open(nc.jetstream(), bucket, TTL, LEASE_KEY, "a")
    lease_b = await KvLease.open(nc.jetstream(), bucket, TTL, LEASE_KEY, "b")
    stop = asyncio.Event()
    running = asyncio.create_task(Scheduler(stack.app, pool, lease_a, [job], 0.05).run(stop))
    await eventually(lambda: _truthy(len(calls) >= 3), timeout=5)
    assert not await lease_b.acquire()

    stop.set()
    await asyncio.wait_for(running, 5)

    assert await lease_b.acquire()


async def _truthy(value: bool) -> bool:
    return value


WIRED = issubclass(PearlApp, ScanTargetCommands) and target_projection.PROJECTION in PROJECTIONS


@pytest.mark.skipif(not WIRED, reason="scan targets are not wired in yet")
async def test_the_scan_schedule_job_requests_due_scheduled_jobs(
    stack: Stack, nc: Client, bucket: str, pool: Pool, tmp_path: Path
) -> None:
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    body = {"name": "nightly", "kind": "iac", "location": "/srv/iac", "scanners": ["checkov"]}
    r = await stack.http.post(
        f"/v1/projects/{project}/targets", json={**body, "schedule": "1d"}, headers=stack.admin
    )
    assert r.status_code == 201, r.text
    await stack.http.get(
        f"/v1/targets/{r.json()['id']}",
        params={"min_position": r.json()["position"]},
        headers=stack.admin,
    )
    settings = stack.settings.model_copy(update={"home": tmp_path})
    lease = await KvLease.open(nc.jetstream(), bucket, TTL, LEASE_KEY, "scheduler")
    scheduler = Scheduler(stack.app, pool, lease, default_jobs(stack.app, pool, settings), 0.1)

    first = await scheduler.tick()
    again = await scheduler.tick()

    assert first["scan_schedules"] >= 1
    assert "scan_schedules" not in again  # not due again before its interval
    r = await stack.http.get(
        f"/v1/projects/{project}/jobs",
        params={"min_position": stack.app.recorder.max_notification_id()},
        headers=stack.admin,
    )
    assert [(j["trigger"], j["scanner"]) for j in r.json()["items"]] == [("schedule", "checkov")]


def write_signing_key(home: Path) -> None:
    seed = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    home.mkdir(parents=True, exist_ok=True)
    (home / "audit-signing.key").write_text(base64.b64encode(seed).decode() + "\n")


async def projected(stack: Stack, pool: Pool) -> None:
    target = stack.app.position
    assert await queries.wait_for_position(pool, target, 15)


async def test_audit_checkpoints_sign_moved_heads_once_and_only_with_a_key(
    stack: Stack, pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PEARL_AUDIT_SIGNING_KEY", raising=False)
    await make_org_and_project(stack.http, stack.admin)
    await projected(stack, pool)
    assert await AuditCheckpoints(stack.app, pool, tmp_path / "no-key")() == 0
    write_signing_key(tmp_path)
    job = AuditCheckpoints(stack.app, pool, tmp_path)

    assert await job() >= 1
    await projected(stack, pool)  # the checkpoint events themselves moved the heads
    assert await job() == 0  # …but a head that is a checkpoint is not signed again
    assert await job() == 0  # nothing moved at all: not even recomputed

    await make_org_and_project(stack.http, stack.admin)
    await projected(stack, pool)
    assert await job() >= 1
    assert not (tmp_path / "no-key" / "audit-signing.key").exists()  # none was made up
