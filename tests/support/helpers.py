"""Small helpers the integration and e2e tests share."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from nats.aio.client import Client


def slug(prefix: str = "org") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def make_org_and_project(
    http: httpx.AsyncClient, admin: dict[str, str]
) -> tuple[str, str, int]:
    org = slug()
    r = await http.post("/v1/orgs", json={"slug": org, "name": org.title()}, headers=admin)
    assert r.status_code == 201, r.text
    r = await http.post(
        f"/v1/orgs/{org}/projects", json={"slug": "web", "name": "Web"}, headers=admin
    )
    assert r.status_code == 201, r.text
    return org, r.json()["id"], r.json()["position"]


async def issue_key(
    http: httpx.AsyncClient, admin: dict[str, str], org: str, *roles: str
) -> dict[str, str]:
    r = await http.post(
        f"/v1/orgs/{org}/keys", json={"name": "k", "roles": list(roles)}, headers=admin
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def finding_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tool": "semgrep",
        "rule_id": "python.sqli",
        "title": "SQL injection",
        "severity": "high",
        "path": "app/db.py",
        "line": 42,
        "message": "tainted query",
    }
    body.update(overrides)
    return body


async def publish_command(
    nc: Client, subject: str, data: dict[str, Any], token: str, command_id: str | None = None
) -> str:
    cid = command_id or str(uuid.uuid4())
    payload = json.dumps({"id": cid, "source": "tests", "data": data}).encode()
    await nc.jetstream().publish(subject, payload, headers={"Authorization": f"Bearer {token}"})
    return cid


async def eventually(check: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll an async `check()` until it returns a truthy value (or fail after `timeout`)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)
