"""The scheduler process: issues time-driven commands, one active instance at a time.

Aggregates never run timers. Work that falls due with time — scheduled scans, signed audit
checkpoints, and governance expiry (approvals, exceptions, SLA breaches) — is a `Job`: an async
function that issues the commands due now (reading the time from `PearlApp.clock`) and returns
how many it issued. Every job is idempotent, so a job run twice, or by two leaders overlapping
during a failover, issues nothing twice.

Several schedulers may run; only the holder of the `scheduler` lease (JetStream KV, see
`services.lease`) runs jobs. It renews the lease every ttl/3 in a task of its own, so a long
job never lets it lapse; when it dies another instance takes over after the lease TTL. A new
leader runs every job at once (it cannot know when the last leader did), then each every
`every_seconds` (monotonic time).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.pearl_app import PearlApp
from projections import queries
from projections.queries import Pool
from services.audit_cli import (
    Entry,
    chain,
    checkpoint_message,
    public_key_b64,
    signing_key,
    store_events,
)
from services.governance_jobs import Expiries
from services.lease import KvLease, Lease
from services.scan_jobs import ScanScheduler, ScanSettings
from services.settings import Settings

log = logging.getLogger(__name__)
LEASE_KEY = "scheduler"
CHECKPOINT_AGGREGATE = "audit_checkpoint"


class Job(NamedTuple):
    """`fn` issues the commands due now and returns how many it issued."""

    name: str
    every_seconds: float
    fn: Callable[[], Awaitable[int]]


def due(jobs: Sequence[Job], last_run: Mapping[str, float], now: float) -> list[Job]:
    """The jobs never run (by this leader) or whose interval has elapsed since their last run."""
    return [
        job
        for job in jobs
        if job.name not in last_run or now - last_run[job.name] >= job.every_seconds
    ]


class Scheduler:
    """Runs the due jobs while it holds the lease."""

    def __init__(
        self,
        app: PearlApp,
        pool: Pool,
        lease: Lease,
        jobs: Sequence[Job],
        tick_seconds: float = 5.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names must be unique: {names}")
        self.app = app
        self.pool = pool
        self.lease = lease
        self.jobs = list(jobs)
        self.tick_seconds = tick_seconds
        self.monotonic = monotonic
        self._last_run: dict[str, float] = {}
        self._leading = False

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the lease (own task) and run due jobs every tick until `stop`; then release."""
        await self.keep_lease()
        keeper = asyncio.create_task(self._keep_lease_until(stop))
        try:
            while not stop.is_set():
                await self.run_due()
                await _wait(stop, self.tick_seconds)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            await self.lease.release()

    async def tick(self) -> dict[str, int]:
        """Acquire or renew the lease, then run the due jobs once if this instance leads."""
        await self.keep_lease()
        return await self.run_due()

    async def keep_lease(self) -> None:
        """Renew the lease we hold, or try to acquire it; NATS errors only mean "not held"."""
        try:
            if self.lease.held:
                await self.lease.renew()
            else:
                await self.lease.acquire()
        except Exception:
            log.exception("scheduler lease upkeep failed", extra={"owner": self.lease.owner})
        leading = self.lease.held
        if leading != self._leading:
            message = "scheduler is the leader" if leading else "scheduler is not the leader"
            log.info(message, extra={"owner": self.lease.owner})
            self._leading = leading

    async def run_due(self) -> dict[str, int]:
        """Run each due job while the lease is held: {job name: commands issued}."""
        if not self.lease.held:
            self._last_run.clear()  # leading again later, run everything at once
            return {}
        issued: dict[str, int] = {}
        for job in due(self.jobs, self._last_run, self.monotonic()):
            if not self.lease.held:
                break
            started = self.monotonic()
            try:
                count = await job.fn()
            except Exception:  # logged; retried at the next tick, never stops the loop
                log.exception("scheduler job failed", extra={"job": job.name})
                continue
            self._last_run[job.name] = started
            issued[job.name] = count
            log.info(
                "scheduler job ran",
                extra={
                    "job": job.name,
                    "issued": count,
                    "seconds": round(self.monotonic() - started, 3),
                },
            )
        return issued

    async def _keep_lease_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _wait(stop, self.lease.renew_every)
            if not stop.is_set():
                await self.keep_lease()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# --- jobs ---------------------------------------------------------------------------------


def configured_signing_key(home: Path) -> Ed25519PrivateKey | None:
    """The audit signing key if one is configured (`pearl audit checkpoint` would make one)."""
    if os.environ.get("PEARL_AUDIT_SIGNING_KEY") or (home / "audit-signing.key").exists():
        return signing_key(home)
    return None


def sign_moved_heads(app: PearlApp, upto: int, key: Ed25519PrivateKey) -> list[tuple[str, int]]:
    """Sign each org's chain head (recomputed from the store up to `upto`) unless it is a
    checkpoint: checkpoints sit in the chain they anchor, so a head that is one has not moved
    since it was signed. (`audit_cli.sign_checkpoints`, behind the CLI, signs those too.)"""
    heads: dict[str, Entry] = {}
    for entry in chain(store_events(app, upto), None):
        heads[entry.env.org] = entry
    public = public_key_b64(key)
    signed = []
    for org, head in sorted(heads.items()):
        if head.env.aggregate == CHECKPOINT_AGGREGATE:
            continue
        signature = base64.b64encode(key.sign(checkpoint_message(org, head.seq, head.hash)))
        if app.record_checkpoint(
            org, head.seq, head.env.position, head.hash, public, signature.decode()
        ):
            signed.append((org, head.seq))
    return signed


class AuditCheckpoints:
    """Signs the head of every org's audit chain that moved since it was last signed."""

    def __init__(self, app: PearlApp, pool: Pool, home: Path) -> None:
        self.app = app
        self.pool = pool
        self.home = home
        self._signed_upto: int | None = None

    async def __call__(self) -> int:
        """How many checkpoints were signed; none without a signing key."""
        key = await asyncio.to_thread(configured_signing_key, self.home)
        if key is None:
            return 0
        upto = await queries.position(self.pool)
        if upto == self._signed_upto:  # no event since the last pass: no head moved
            return 0
        signed = await asyncio.to_thread(sign_moved_heads, self.app, upto, key)
        self._signed_upto = upto
        return len(signed)


def default_jobs(app: PearlApp, pool: Pool, settings: Settings) -> list[Job]:
    """Every job of the scheduler process."""
    scan = ScanSettings()
    expiries = Expiries(app, pool)
    return [
        Job("scan_schedules", scan.schedule_tick_seconds, ScanScheduler(app, pool, scan).tick),
        Job(
            "audit_checkpoints",
            settings.checkpoint_every_seconds,
            AuditCheckpoints(app, pool, settings.home),
        ),
        Job("approval_expiry", settings.scheduler_tick_seconds, expiries.approvals),
        Job("exception_expiry", settings.scheduler_tick_seconds, expiries.exceptions),
        Job("sla_breaches", settings.scheduler_tick_seconds * 6, expiries.slas),
        Job("task_leases", settings.scheduler_tick_seconds, expiries.task_leases),
    ]


async def run_scheduler(settings: Settings) -> None:
    """The `scheduler` process: competes for the lease and runs the jobs until SIGINT/SIGTERM."""
    from services.bus import connect
    from services.runtime import build_app, read_pool, stop_event, subjects_of

    nats_url, database_url = settings.require_urls()
    app = build_app(settings)
    pool = read_pool(database_url, 2)
    await pool.open()
    nc = await connect(nats_url, "pearl-scheduler")
    try:
        lease = await KvLease.open(
            nc.jetstream(),
            subjects_of(settings).locks_bucket,
            settings.scheduler_lease_seconds,
            LEASE_KEY,
        )
        jobs = default_jobs(app, pool, settings)
        scheduler = Scheduler(app, pool, lease, jobs, settings.scheduler_tick_seconds)
        log.info("scheduler started", extra={"owner": lease.owner, "jobs": [j.name for j in jobs]})
        await scheduler.run(stop_event())
    finally:
        await nc.close()
        await pool.close()
        app.close()
