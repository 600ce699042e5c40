"""`pearl up` on a fresh home, driven the way a newcomer does: HTTP, NATS, then Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import nats
import pytest

from services.embedded import find_free_port

pytestmark = pytest.mark.e2e


def start_up(home: Path, port: int) -> subprocess.Popen[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NATS_URL", "DATABASE_URL") and not k.startswith("PEARL_")
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "up", "--port", str(port), "--home", str(home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], prefix: str, timeout: float = 90.0) -> dict[str, str]:
    """Read `pearl up` output until the line starting with `prefix`; collect `X: value` lines."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"pearl up exited early: {proc.poll()}")
        key, _, value = line.strip().partition(": ")
        seen[key] = value
        if line.startswith(prefix):
            return seen
    raise AssertionError(f"no {prefix!r} line within {timeout}s")


async def test_pearl_up_embedded_serves_http_and_nats_then_stops_on_ctrl_c(tmp_path: Path):
    port = find_free_port()
    home = tmp_path / ".pearl"
    proc = start_up(home, port)
    try:
        seen = await asyncio.to_thread(read_until, proc, "PeaRL API:")
        url = seen["PeaRL API"]
        assert url == f"http://127.0.0.1:{port}"
        key_file = home / "admin.key"
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        admin = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
        org = f"e2e-{uuid.uuid4().hex[:6]}"
        async with httpx.AsyncClient(base_url=url, timeout=20) as http:
            assert (await http.get("/ready")).status_code == 200
            r = await http.post("/v1/orgs", json={"slug": org, "name": "E2E"}, headers=admin)
            assert r.status_code == 201, r.text
            r = await http.post(
                f"/v1/orgs/{org}/projects", json={"slug": "api", "name": "API"}, headers=admin
            )
            project = r.json()["id"]
            r = await http.post(
                f"/v1/projects/{project}/findings",
                headers=admin,
                json={
                    "tool": "semgrep",
                    "rule_id": "sqli",
                    "title": "SQL injection",
                    "severity": "critical",
                    "path": "app.py",
                    "line": 7,
                },
            )
            assert r.status_code == 201, r.text

            nc = await nats.connect(seen["PeaRL NATS"])
            payload = {
                "id": str(uuid.uuid4()),
                "data": {
                    "project_id": project,
                    "tool": "bandit",
                    "rule_id": "B105",
                    "title": "hardcoded password",
                    "severity": "low",
                    "path": "settings.py",
                },
            }
            await nc.jetstream().publish(
                f"pearl.cmd.{org}.finding.record",
                json.dumps(payload).encode(),
                headers={"Authorization": admin["Authorization"]},
            )
            await nc.close()

            async def both_listed() -> list:
                r = await http.get(f"/v1/projects/{project}/findings", headers=admin)
                items = r.json().get("items", []) if r.status_code == 200 else []
                return items if len(items) == 2 else []

            items = []
            for _ in range(200):
                items = await both_listed()
                if items:
                    break
                await asyncio.sleep(0.1)
            assert sorted(i["tool"] for i in items) == ["bandit", "semgrep"]
            r = await http.get("/v1/audit", params={"project": project}, headers=admin)
            assert [e["type"] for e in r.json()["items"]] == [
                "pearl.project.created.v1",
                "pearl.finding.recorded.v2",
                "pearl.finding.recorded.v2",
            ]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "PeaRL stopped" in out
    assert not (home / "pearl.env").exists()
