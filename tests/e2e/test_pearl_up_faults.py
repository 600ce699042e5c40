"""`pearl up` brings back whatever dies: kill -9 a PeaRL process, the embedded NATS server or the
embedded PostgreSQL, and it is restarted, `/ready` answers 200 again and commands still flow
end to end (HTTP and NATS). Recovery times are printed (`-s`) for docs/reliability."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator

import httpx
import nats
import pytest

from tests.support.helpers import eventually
from tests.support.pearl_up import PearlUp, pearl_up_running

pytestmark = pytest.mark.e2e


@pytest.fixture
def pearl_up() -> Iterator[PearlUp]:
    with pearl_up_running("pearl-faults-") as up:
        yield up


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_pearl_up_restarts_each_killed_process_and_server_and_commands_still_flow(
    pearl_up: PearlUp,
):
    async def announced() -> bool:
        assert pearl_up.proc.poll() is None, pearl_up.output()
        return "PeaRL API:" in pearl_up.output()

    await eventually(announced, timeout=120, interval=0.2)
    admin = {"Authorization": f"Bearer {(pearl_up.home / 'admin.key').read_text().strip()}"}
    nats_url = (pearl_up.home / "pearl.env").read_text().split("NATS_URL=")[1].split()[0]
    org = f"f-{uuid.uuid4().hex[:6]}"
    timings: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(base_url=pearl_up.url, timeout=30) as http:
        r = await http.post("/v1/orgs", json={"slug": org, "name": "Faults"}, headers=admin)
        assert r.status_code == 201, r.text
        r = await http.post(
            f"/v1/orgs/{org}/projects", json={"slug": "p", "name": "P"}, headers=admin
        )
        assert r.status_code == 201, r.text
        project = r.json()["id"]

        async def ready() -> bool:
            try:
                return (await http.get("/ready", timeout=2)).status_code == 200
            except httpx.HTTPError:
                return False

        async def commands_flow(tag: str) -> float:
            """One finding over HTTP and one over NATS, both read back; returns when the HTTP
            command was accepted (monotonic)."""

            async def http_finding() -> bool:
                try:
                    r = await http.post(
                        f"/v1/projects/{project}/findings",
                        headers={**admin, "Idempotency-Key": f"http-{tag}"},
                        json={
                            "tool": "semgrep",
                            "rule_id": f"http-{tag}",
                            "title": tag,
                            "severity": "low",
                            "path": "a.py",
                        },
                        timeout=5,
                    )
                except httpx.HTTPError:
                    return False
                return r.status_code in (200, 201)

            await eventually(http_finding, timeout=60, interval=0.2)
            accepted = time.monotonic()
            nc = await nats.connect(nats_url)
            try:
                body = {
                    "id": f"nats-{tag}",
                    "data": {
                        "project_id": project,
                        "tool": "bandit",
                        "rule_id": f"nats-{tag}",
                        "title": tag,
                        "severity": "low",
                        "path": "b.py",
                    },
                }
                await nc.jetstream().publish(
                    f"pearl.cmd.{org}.finding.record",
                    json.dumps(body).encode(),
                    headers={"Authorization": admin["Authorization"]},
                )
            finally:
                await nc.close()

            async def both_listed() -> bool:
                try:
                    r = await http.get(f"/v1/projects/{project}/findings", headers=admin, timeout=5)
                except httpx.HTTPError:
                    return False
                rules = {i["rule_id"] for i in r.json().get("items", [])} if r.is_success else set()
                return {f"http-{tag}", f"nats-{tag}"} <= rules

            await eventually(both_listed, timeout=60, interval=0.2)
            return accepted

        await commands_flow("start")
        for name in ("api", "worker", "projector", "relay", "nats", "postgres"):
            old = pearl_up.pid(name)
            assert old is not None and alive(old), name
            killed = time.monotonic()
            os.kill(old, signal.SIGKILL)

            async def restarted(name: str = name, old: int = old) -> bool:
                new = pearl_up.pid(name)
                return new is not None and new != old and alive(new)

            await eventually(restarted, timeout=60, interval=0.1)
            back = time.monotonic()
            await eventually(ready, timeout=60, interval=0.1)
            is_ready = time.monotonic()
            accepted = await commands_flow(name)
            flowing = time.monotonic()
            timings[name] = {
                "restarted_s": round(back - killed, 2),
                "ready_s": round(is_ready - killed, 2),
                "http_command_s": round(accepted - killed, 2),
                "commands_s": round(flowing - killed, 2),
            }
            assert pearl_up.proc.poll() is None, pearl_up.output()
        # every finding exactly once, whatever died meanwhile
        r = await http.get(f"/v1/projects/{project}/findings", headers=admin)
        rules = sorted(i["rule_id"] for i in r.json()["items"])
        tags = ["start", "api", "worker", "projector", "relay", "nats", "postgres"]
        assert rules == sorted([f"http-{t}" for t in tags] + [f"nats-{t}" for t in tags])
    out = pearl_up.output()
    for name in timings:
        assert f"{name} restarted" in out
    print("\nrecovery after kill -9 (seconds):", json.dumps(timings, indent=1))
