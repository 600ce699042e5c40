"""Agents in the loop end to end over HTTP and NATS against real NATS and PostgreSQL: agents
with autonomy levels, task packets cut from a real scan, 20 agents racing for one packet,
guard rails, the kill switch, lease expiry by the scheduler, and verification by the next
full scan (the real tornado 4.5 → 5.0 rescan), every refusal in the audit trail."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from projections.queries import wait_for_position
from services.governance_jobs import Expiries
from services.reports import parse_file
from tests.integration.test_scans import sample
from tests.support.helpers import eventually, issue_key, make_org_and_project, publish_command
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
DENIAL = "pearl.access_denial.recorded.v1"


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def register(stack: Stack, org: str, slug: str, autonomy: dict[str, str]) -> dict[str, str]:
    body = {"slug": slug, "name": slug, "owner": "platform", "autonomy": autonomy}
    r = await stack.http.post(f"/v1/orgs/{org}/agents", json=body, headers=stack.admin)
    created = await ok(r, 201)
    return {"Authorization": f"Bearer {created['token']}"}


def fingerprints(name: str) -> set[str]:
    """The fingerprints the project's own parser finds in a sample report."""
    report = parse_file(Path(_sample_path(name)), None)
    try:
        return {f.fingerprint for chunk in report.chunks(1000) for f in chunk}
    finally:
        report.close()


def _sample_path(name: str) -> str:
    from tests.conftest import samples_dir

    return str(samples_dir() / name)


async def denials(stack: Stack, org: str, actor: str, position: int) -> list[dict[str, Any]]:
    r = await stack.http.get(
        "/v1/audit",
        params={"org": org, "type": DENIAL, "actor": actor, "min_position": position},
        headers=stack.admin,
    )
    return list((await ok(r))["items"])


async def test_task_packets_from_a_real_scan_to_verification(stack: Stack) -> None:
    http, admin = stack.http, stack.admin
    org, project, _ = await make_org_and_project(http, admin)
    operator = await issue_key(http, admin, org, "operator")
    base = f"/v1/projects/{project}"
    scan = await ok(
        await http.post(
            f"{base}/scans",
            content=sample("semgrep-tornado-4.5.json"),
            params={"target": "tornado"},
            headers=operator,
        ),
        202,
    )
    proposer = await register(stack, org, "proposer", {"*": "propose"})
    fixer = await register(stack, org, "fixer", {"*": "act"})
    watcher = await register(stack, org, "watcher", {"*": "observe"})

    # An observing agent may read, never cut packets; the refusal is audited.
    r = await http.post(f"{base}/tasks", json={"severities": ["medium"]}, headers=watcher)
    assert r.status_code == 403 and r.json()["type"] == "urn:pearl:problem:autonomy-exceeded"
    cut = await ok(
        await http.post(
            f"{base}/tasks",
            json={"severities": ["medium"]},
            params={"min_position": scan["position"]},
            headers=proposer,
        ),
        201,
    )
    assert len(cut["created"]) == 11  # the 11 medium findings of the report, one packet each
    again = await ok(
        await http.post(f"{base}/tasks", json={"severities": ["medium"]}, headers=proposer), 201
    )
    assert again["created"] == []  # findings already in unfinished packets are skipped
    page = await ok(
        await http.get(f"{base}/tasks", params={"min_position": cut["position"]}, headers=watcher)
    )
    tasks = {t["id"]: t for t in page["items"]}
    assert set(tasks) == set(cut["created"])
    one = next(iter(tasks.values()))
    assert one["status"] == "open" and one["priority"] in ("p2", "p3")
    assert one["spec"]["guidance"][0].startswith("Fix python.")
    assert one["guard_rails"]["allowed_paths"] == [one["targets"][0]["path"]]

    # Pick a packet whose finding is gone in tornado 5.0 and one whose finding remains.
    later = fingerprints("semgrep-tornado-5.0.json")
    gone = next(t for t in tasks.values() if t["fingerprints"][0] not in later)
    kept = next(t for t in tasks.values() if t["fingerprints"][0] in later)

    # propose: may claim, may not complete; act: completes within the guard rails.
    r = await ok(await http.post(f"{base}/tasks/{gone['id']}/claim", headers=proposer))
    r = await http.post(
        f"{base}/tasks/{gone['id']}/complete",
        json={
            "changed_files": gone["guard_rails"]["allowed_paths"],
            "changed_lines": 3,
            "summary": "fixed",
        },
        headers=proposer,
    )
    assert r.status_code == 403 and r.json()["type"] == "urn:pearl:problem:autonomy-exceeded"
    await ok(
        await http.post(
            f"{base}/tasks/{gone['id']}/release", json={"reason": "needs act"}, headers=proposer
        )
    )
    for packet in (gone, kept):
        await ok(
            await http.post(
                f"{base}/tasks/{packet['id']}/claim", json={"ttl_seconds": 600}, headers=fixer
            )
        )
        # Outside the packet's files: refused, nothing changes.
        r = await http.post(
            f"{base}/tasks/{packet['id']}/complete",
            json={"changed_files": ["setup.py"], "changed_lines": 1, "summary": "x"},
            headers=fixer,
        )
        assert r.status_code == 403 and r.json()["type"] == "urn:pearl:problem:guard-rail"
        done = await ok(
            await http.post(
                f"{base}/tasks/{packet['id']}/complete",
                json={
                    "branch": "fix/tls",
                    "commit": "abcdef1",
                    "pr_url": "https://git.example/pr/1",
                    "changed_files": packet["guard_rails"]["allowed_paths"],
                    "changed_lines": 4,
                    "summary": "use a safe default",
                },
                headers=fixer,
            )
        )
        assert done["status"] == "completed"
    # Completing again: not held any more → 409, audited.
    r = await http.post(
        f"{base}/tasks/{gone['id']}/complete",
        json={"changed_files": ["x.py"], "changed_lines": 1, "summary": "x"},
        headers=fixer,
    )
    assert r.status_code == 409 and r.json()["type"] == "urn:pearl:problem:lease-conflict"

    # The next full scan (tornado 5.0) verifies one packet and reopens the other.
    rescan = await ok(
        await http.post(
            f"{base}/scans",
            content=sample("semgrep-tornado-5.0.json"),
            params={"target": "tornado"},
            headers=operator,
        ),
        202,
    )
    assert rescan["counts"]["fixed"] >= 1

    async def judged() -> bool:
        a = (await http.get(f"{base}/tasks/{gone['id']}", headers=watcher)).json()
        b = (await http.get(f"{base}/tasks/{kept['id']}", headers=watcher)).json()
        return a["status"] == "verified" and b["status"] == "open"

    await eventually(judged, timeout=20)
    kept_now = await ok(await http.get(f"{base}/tasks/{kept['id']}", headers=watcher))
    assert kept_now["remaining"] == kept["fingerprints"] and kept_now["last_event"] == "reopened"
    finding = await ok(await http.get(f"/v1/findings/{gone['finding_ids'][0]}", headers=watcher))
    assert finding["status"] == "fixed"

    position = stack.app.position

    async def codes(actor: str) -> list[tuple[str, str]]:
        rows = await denials(stack, org, actor, position)
        return [(d["data"]["code"], d["data"]["channel"]) for d in rows]

    assert await codes("agent:watcher") == [("autonomy-exceeded", "http")]
    assert await codes("agent:proposer") == [("autonomy-exceeded", "http")]
    assert sorted(await codes("agent:fixer")) == [
        ("guard-rail", "http"),
        ("guard-rail", "http"),
        ("lease-conflict", "http"),
    ]


async def test_twenty_agents_race_for_one_packet_and_exactly_one_wins(stack: Stack) -> None:
    http, admin = stack.http, stack.admin
    org, project, _ = await make_org_and_project(http, admin)
    base = f"/v1/projects/{project}"
    r = await http.post(
        f"{base}/findings",
        json={"tool": "semgrep", "rule_id": "r", "title": "t", "severity": "high", "path": "a.py"},
        headers=admin,
    )
    finding = (await ok(r, 201))["id"]
    created = await ok(
        await http.post(f"{base}/tasks", json={"finding_ids": [finding]}, headers=admin), 201
    )
    [task] = created["created"]
    agents = [await register(stack, org, f"racer-{i}", {"*": "act"}) for i in range(20)]

    answers = await asyncio.gather(
        *(http.post(f"{base}/tasks/{task}/claim", headers=h) for h in agents)
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * 19, statuses
    assert {a.json()["type"] for a in answers if a.status_code == 409} == {
        "urn:pearl:problem:lease-conflict"
    }
    winner = next(a.json() for a in answers if a.status_code == 200)
    row = await ok(
        await http.get(
            f"{base}/tasks/{task}", params={"min_position": winner["position"]}, headers=admin
        )
    )
    assert row["holder"] == winner["holder"] and row["attempts"] == 1


async def test_kill_switch_lease_expiry_and_the_bus(stack: Stack) -> None:
    http, admin = stack.http, stack.admin
    org, project, _ = await make_org_and_project(http, admin)
    base = f"/v1/projects/{project}"
    ids = []
    for path in ("a.py", "b.py"):
        r = await http.post(
            f"{base}/findings",
            json={"tool": "t", "rule_id": path, "title": "t", "severity": "low", "path": path},
            headers=admin,
        )
        ids.append((await ok(r, 201))["id"])
    created = await ok(
        await http.post(f"{base}/tasks", json={"finding_ids": ids}, headers=admin), 201
    )
    first, second = created["created"]
    bot = await register(stack, org, "bot", {"*": "act"})
    token = bot["Authorization"].removeprefix("Bearer ")

    # Claim over NATS: the same command, the same checks.
    subject = stack.subjects.command(org, "task", "claim")
    await publish_command(stack.nc, subject, {"task_id": first, "ttl_seconds": 60}, token)

    async def claimed() -> Any:
        row = (await http.get(f"{base}/tasks/{first}", headers=admin)).json()
        return row["status"] == "claimed" and row

    row = await eventually(claimed)
    assert row["holder"] == "agent:bot"

    # The kill switch: the lease goes back at once and the agent is refused from now on.
    paused = await ok(
        await http.post(
            f"/v1/orgs/{org}/agents/bot/pause", json={"reason": "runaway"}, headers=admin
        )
    )
    assert paused["released"] == [first]
    r = await http.get(f"{base}/tasks", headers=bot)
    assert r.status_code == 403 and "paused" in r.json()["detail"]
    row = await ok(
        await http.get(
            f"{base}/tasks/{first}", params={"min_position": paused["position"]}, headers=admin
        )
    )
    assert row["status"] == "open" and row["last_event"] == "revoked"
    agent = await ok(await http.get(f"/v1/orgs/{org}/agents/bot", headers=admin))
    assert agent["paused"] is True and agent["pause_reason"] == "runaway"
    await ok(
        await http.post(
            f"/v1/orgs/{org}/agents/bot/resume", json={"reason": "fixed"}, headers=admin
        )
    )

    # A lease nobody renews is ended by the scheduler's job once the clock passes it.
    claim = await ok(
        await http.post(f"{base}/tasks/{second}/claim", json={"ttl_seconds": 60}, headers=bot)
    )
    jobs = Expiries(stack.app, stack.pool)
    assert await wait_for_position(stack.pool, claim["position"], 10)
    await jobs.task_leases()  # other tests' leases may be due; this one is not
    row = await ok(await http.get(f"{base}/tasks/{second}", headers=admin))
    assert row["status"] == "claimed"
    real = stack.app.clock
    stack.app.clock = lambda: real() + timedelta(minutes=2)
    try:
        assert await jobs.task_leases() >= 1
        r = await http.post(f"{base}/tasks/{second}/heartbeat", headers=bot)
        assert r.status_code == 409 and r.json()["type"] == "urn:pearl:problem:lease-conflict"
    finally:
        stack.app.clock = real
    position = stack.app.position
    row = await ok(
        await http.get(f"{base}/tasks/{second}", params={"min_position": position}, headers=admin)
    )
    assert row["status"] == "open" and row["last_event"] == "lease_expired"

    # Another org's admin sees none of it.
    other, _, _ = await make_org_and_project(http, admin)
    stranger = await issue_key(http, admin, other, "admin")
    r = await http.get(f"{base}/tasks/{first}", headers=stranger)
    assert r.status_code == 404
    r = await http.post(f"/v1/orgs/{org}/agents/bot/pause", json={"reason": "x"}, headers=stranger)
    assert r.status_code == 404
