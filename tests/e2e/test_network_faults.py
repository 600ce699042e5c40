"""Network faults between PeaRL and its servers: every process resumes, nothing lost or doubled.

The API, relay, projector, worker and gatekeeper run as real processes whose `DATABASE_URL` and
`NATS_URL` point at TCP proxies on loopback; during a seeded mixed workload the test delays,
blackholes and cuts each link in turn (`PEARL_CHAOS_SEED` replays an order and timing).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from services.embedded import find_free_port
from services.runtime import build_app
from services.settings import Settings
from tests.conftest import ROOT, samples_dir
from tests.support.chaos import (
    Recovery,
    TcpProxy,
    Workload,
    chaos_seed,
    check_invariants,
    eventually,
    measure_catch_up,
    say,
)
from tests.support.processes import PearlProcess

pytestmark = pytest.mark.e2e
PROCESSES = ("api", "relay", "projector", "worker", "gatekeeper")
FAULTS = (
    "postgres-delay",
    "postgres-blackhole",
    "postgres-cut",
    "nats-delay",
    "nats-blackhole",
    "nats-cut",
)


async def test_delay_blackhole_and_cut_links_lose_and_double_nothing(
    fresh_settings: Settings, tmp_path: Path, long_run: bool
):
    seed = chaos_seed("network faults")
    rng = random.Random(seed)
    total = 20_000 if long_run else 1_500
    rate = None if long_run else 40.0  # commands/s in CI: the faults land under load
    direct_nats, direct_db = fresh_settings.require_urls()
    db, bus = urlparse(direct_db), urlparse(direct_nats)
    proxies = {
        "postgres": await TcpProxy(db.hostname or "127.0.0.1", db.port or 5432).start(),
        "nats": await TcpProxy(bus.hostname or "127.0.0.1", bus.port or 4222).start(),
    }
    proxied = fresh_settings.model_copy(
        update={
            "database_url": proxies["postgres"].url_for(direct_db),
            "nats_url": proxies["nats"].url_for(direct_nats),
        }
    )
    app = await asyncio.to_thread(build_app, fresh_settings)
    token = await asyncio.to_thread(app.bootstrap_admin_key, "chaos")
    app.close()
    port = find_free_port()
    env = {"PEARL_PORT": str(port), "PEARL_RATE_LIMIT_PER_MINUTE": "10000000"}
    procs = [PearlProcess(name, proxied, tmp_path, env) for name in PROCESSES]
    api = f"http://127.0.0.1:{port}"
    recoveries: list[Recovery] = []
    t0 = time.monotonic()
    run: asyncio.Task[None] | None = None
    try:
        for proc in procs:
            proc.start()
        await eventually(lambda: _ready(api), 60, 0.2, "API ready")
        workload = Workload(
            rng,
            nats_url=direct_nats,
            root=fresh_settings.subject_root,
            admin_token=token,
            api_url=api,
            samples=samples_dir()
            if samples_dir().exists()
            else ROOT / "docs" / "examples" / "scans",
        )
        async with workload.connected():
            await workload.setup()
            faults_done = asyncio.Event()
            run = asyncio.create_task(workload.run(total, until=faults_done, rate=rate))
            faults = rng.sample(FAULTS, len(FAULTS))
            marks = sorted(rng.uniform(0.05, 0.75) for _ in faults)
            for fault, mark in zip(faults, marks, strict=True):

                async def reached(mark: float = mark) -> bool:
                    return run.done() or workload.started >= mark * total

                await eventually(reached, 300, 0.05, f"workload at {mark:.0%}")
                link, kind = fault.split("-")
                proxy = proxies[link]
                hold = rng.uniform(1.5, 4.0)
                say(f"{time.monotonic() - t0:6.1f}s {fault} for {hold:.1f}s")
                if kind == "delay":
                    proxy.delay = rng.uniform(0.05, 0.3)
                elif kind == "blackhole":
                    proxy.blackhole()
                await asyncio.sleep(hold)  # the fault's duration is part of the workload
                if kind == "cut":
                    say(f"cut {proxy.cut()} connections")
                proxy.restore()
                recoveries.append(
                    await _recovery(
                        fault,
                        t0,
                        workload,
                        run,
                        direct_db,
                        direct_nats,
                        fresh_settings.subject_root,
                    )
                )
            faults_done.set()
            await run
            for proc in procs:
                assert proc.proc is not None and proc.proc.poll() is None, f"{proc.name} died"
        report = await check_invariants(
            workload.ledger,
            database_url=direct_db,
            nats_url=direct_nats,
            root=fresh_settings.subject_root,
        )
    finally:
        if run is not None and not run.done():
            run.cancel()
        for proc in procs:
            proc.stop()
        for proxy in proxies.values():
            await proxy.close()
    say(
        f"{workload.ledger.acknowledged} commands acknowledged ({workload.ledger.retries} "
        f"retries), {report.stored} events stored = published = projected, "
        f"audit chain intact ({report.audit_verified} entries); seed {seed}"
    )
    for r in recoveries:
        say(r.line())


async def _ready(api: str) -> bool:
    async with httpx.AsyncClient(timeout=2.0) as http:
        return (await http.get(f"{api}/ready")).status_code == 200


async def _recovery(
    fault: str,
    t0: float,
    workload: Workload,
    run: asyncio.Task[None],
    database_url: str,
    nats_url: str,
    root: str,
) -> Recovery:
    """After the link is restored: time to the next acknowledged command and until the
    projections reach the store head as it was then."""
    restored = time.monotonic()
    recovery = Recovery(fault, restored - t0)
    await measure_catch_up(recovery, restored, database_url, nats_url, root)

    async def applied() -> float | bool | None:
        return workload.ledger.first_applied_after(restored) or run.done()

    first = await eventually(applied, 60, 0.05, f"a command applied after {fault}")
    if first is not True:
        recovery.applied_s = first - restored
    return recovery
