"""Faults under `pearl up`: kill -9 in turn every PeaRL process, the embedded NATS server and the
embedded PostgreSQL during a seeded mixed workload; `pearl up` brings each back, and afterwards
every acknowledged command is stored once, published once, projected once, and the audit
chain verifies. Recovery times are printed (`-s`); `PEARL_CHAOS_SEED` replays the order and
timing, `--long` (or `PEARL_LONG=1`) runs 20,000 commands.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator

import httpx
import pytest

from services.supervisor import PROCESSES, read_env_file
from tests.conftest import ROOT, samples_dir
from tests.support.chaos import (
    Recovery,
    Workload,
    chaos_seed,
    check_invariants,
    eventually,
    kill9,
    measure_catch_up,
    say,
)
from tests.support.pearl_up import PearlUp, pearl_up_running

pytestmark = pytest.mark.e2e
TARGETS = (*PROCESSES, "nats", "postgres")


@pytest.fixture
def pearl_up() -> Iterator[PearlUp]:
    extra = {"PEARL_RATE_LIMIT_PER_MINUTE": "10000000"}  # one admin client drives the load
    keep = bool(os.environ.get("PEARL_CHAOS_KEEP"))
    with pearl_up_running("pearl-chaos-", extra, keep=keep) as up:
        yield up


async def test_kill_9_each_process_and_server_under_pearl_up_loses_and_doubles_nothing(
    pearl_up: PearlUp, long_run: bool
):
    seed = chaos_seed("faults under pearl up")
    rng = random.Random(seed)
    total = 20_000 if long_run else 1_500
    rate = None if long_run else 25.0  # commands/s in CI: the nine kills land under load

    async def announced() -> bool:
        assert pearl_up.proc.poll() is None, pearl_up.output()[-3000:]
        return "PeaRL API:" in pearl_up.output()

    await eventually(announced, 180, 0.2, "pearl up announcing its API")
    env = read_env_file(pearl_up.home)
    database_url, nats_url = env["DATABASE_URL"], env["NATS_URL"]
    workload = Workload(
        rng,
        nats_url=nats_url,
        root=env["PEARL_SUBJECT_ROOT"],
        admin_token=(pearl_up.home / "admin.key").read_text().strip(),
        api_url=pearl_up.url,
        samples=samples_dir() if samples_dir().exists() else ROOT / "docs" / "examples" / "scans",
    )
    recoveries: list[Recovery] = []
    t0 = time.monotonic()
    run: asyncio.Task[None] | None = None
    async with workload.connected(), httpx.AsyncClient(base_url=pearl_up.url) as http:
        try:
            await workload.setup()
            faults_done = asyncio.Event()
            run = asyncio.create_task(workload.run(total, until=faults_done, rate=rate))
            targets = rng.sample(TARGETS, len(TARGETS))
            marks = sorted(rng.uniform(0.05, 0.8) for _ in targets)
            for target, mark in zip(targets, marks, strict=True):

                async def reached(mark: float = mark) -> bool:
                    return run.done() or workload.started >= mark * total

                await eventually(reached, 600, 0.05, f"workload at {mark:.0%}")
                await asyncio.sleep(rng.uniform(0.0, 1.0))
                old = await eventually(lambda t=target: _pid(pearl_up, t), 60, 0.1, target)
                at = time.monotonic()
                say(f"{at - t0:6.1f}s kill -9 {target} (pid {old})")
                kill9(old)
                recoveries.append(
                    await _recover(pearl_up, http, workload, run, target, old, at, t0, env)
                )
                assert pearl_up.proc.poll() is None, pearl_up.output()[-3000:]
            faults_done.set()
            await run
        finally:
            if run is not None and not run.done():
                run.cancel()
        report = await check_invariants(
            workload.ledger,
            database_url=database_url,
            nats_url=nats_url,
            root=env["PEARL_SUBJECT_ROOT"],
        )
    out = pearl_up.output()
    for target in TARGETS:
        assert f"{target} restarted" in out, f"no restart of {target} logged"
    say(
        f"{workload.ledger.acknowledged} commands acknowledged ({workload.ledger.retries} "
        f"retries), {report.stored} events stored = published = projected, audit chain intact "
        f"({report.audit_verified} entries); seed {seed}"
    )
    for r in recoveries:
        say(r.line())


async def _pid(up: PearlUp, name: str) -> int | None:
    return up.pid(name)


async def _recover(
    up: PearlUp,
    http: httpx.AsyncClient,
    workload: Workload,
    run: asyncio.Task[None],
    target: str,
    old: int,
    at: float,
    t0: float,
    env: dict[str, str],
) -> Recovery:
    """Respawned (a new pid), /ready 200 again, a command acknowledged, everything stored so
    far published and projected — each measured from the kill."""
    recovery = Recovery(target, at - t0)

    async def respawned() -> bool:
        new = up.pid(target)
        return new is not None and new != old

    await eventually(respawned, 90, 0.05, f"{target} restarted")
    recovery.respawn_s = time.monotonic() - at

    async def ready() -> bool:
        return (await http.get("/ready", timeout=2)).status_code == 200

    await eventually(ready, 90, 0.05, f"/ready after {target}")
    recovery.ready_s = time.monotonic() - at

    async def applied() -> float | bool | None:
        return workload.ledger.first_applied_after(at) or run.done()

    first = await eventually(applied, 90, 0.05, f"a command acknowledged after {target}")
    if first is not True:
        recovery.applied_s = first - at
    await measure_catch_up(
        recovery, at, env["DATABASE_URL"], env["NATS_URL"], env["PEARL_SUBJECT_ROOT"]
    )
    return recovery
