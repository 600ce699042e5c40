"""Every command route honours `Idempotency-Key`: walked from the OpenAPI document.

Same key and same request twice: the same answer (marked `Idempotent-Replayed`), nothing saved
twice; same key with another request: 422 problem+json. A credential is minted once and its
secret is never shown again: the replay answers the same key id without the token.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.api.openapi import openapi_document
from tests.integration.test_tenancy import BODIES, victim_resources
from tests.support.helpers import slug
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
MISMATCH = "urn:pearl:problem:idempotency-key-reused"
#: Fields whose value can change without making the request invalid (for the mismatch check).
FREE_TEXT = ("reason", "name", "justification", "text", "summary", "title", "message")
SECRET_FIELDS = {"token"}
#: Run last, in this order: each ends what the routes before it need (a lease, the agent).
LAST = (
    "/v1/projects/{project_id}/tasks/{task_id}/release",
    "/v1/projects/{project_id}/tasks/{task_id}/complete",
    "/v1/orgs/{org}/agents/{slug}/pause",
    "/v1/orgs/{org}/agents/{slug}/resume",
)
SARIF = json.dumps(
    {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "idem"}}, "results": []}]}
).encode()


def command_routes() -> list[str]:
    doc = openapi_document()
    posts = [path for path, ops in doc["paths"].items() if "post" in ops]
    for path in posts:
        names = {p["name"].lower() for p in doc["paths"][path]["post"].get("parameters", [])}
        assert "idempotency-key" in names, f"POST {path} does not document Idempotency-Key"
    first = sorted(p for p in posts if p not in LAST)
    return first + [p for p in LAST if p in posts]


def _changed(body: Any) -> Any | None:
    """The same request with one free-text field changed (None: nothing safe to change)."""
    if not isinstance(body, dict):
        return None
    for name in FREE_TEXT:
        if isinstance(body.get(name), str):
            other = copy.deepcopy(body)
            other[name] = body[name] + "2"
            return other
    return None


async def _send(
    http: httpx.AsyncClient, path: str, body: Any, headers: dict[str, str], key: str
) -> httpx.Response:
    headers = {**headers, "Idempotency-Key": key}
    if path.endswith("/scans"):
        return await http.post(path, content=SARIF, headers=headers)
    return await http.post(path, json=body, headers=headers)


async def test_every_post_route_answers_a_repeated_key_once(stack: Stack):
    ids = await victim_resources(stack)
    r = await stack.http.post(
        f"/v1/orgs/{ids['org']}/agents/{ids['slug']}/keys", headers=stack.admin
    )
    assert r.status_code == 201, r.text
    bot = {"Authorization": f"Bearer {r.json()['token']}"}  # the agent holding the task
    bodies = {path: body for (method, path), body in BODIES.items() if method == "POST"}
    bodies["/v1/orgs"] = {"slug": slug("idem"), "name": "Idem"}
    bodies["/v1/projects/{project_id}/tasks/{task_id}/heartbeat"] = {"ttl_seconds": 600}
    bodies["/v1/projects/{project_id}/tasks/{task_id}/claim"] = {"ttl_seconds": 600}
    bodies["/v1/promotions/{promotion_id}/approval-requests"] = None
    bodies["/v1/projects/{project_id}/exceptions"] = {
        "rule_id": "idem",
        "justification": "accepted risk for now",
        "expires_at": (datetime.now(UTC) + timedelta(days=10)).isoformat(),
    }
    replayed: list[str] = []
    refused: dict[str, str] = {}
    for template in command_routes():
        path = template.format(**ids)
        headers = bot if "/tasks/{task_id}/" in template else stack.admin
        body = bodies.get(template)
        key = str(uuid.uuid4())
        first = await _send(stack.http, path, body, headers, key)
        assert first.status_code < 500, (template, first.text)
        if first.status_code >= 300:
            refused[template] = f"{first.status_code} {first.text[:120]}"
            continue
        second = await _send(stack.http, path, body, headers, key)
        assert second.status_code == first.status_code, (template, second.text)
        assert second.headers.get("Idempotent-Replayed") == "true", template
        assert second.headers["Pearl-Position"] == first.headers["Pearl-Position"], template
        answer = {k: v for k, v in first.json().items() if k not in SECRET_FIELDS}
        assert second.json() == answer, (template, first.json(), second.json())
        other = _changed(body)
        if other is not None:
            third = await _send(stack.http, path, other, headers, key)
            assert third.status_code == 422, (template, third.status_code, third.text)
            assert third.headers["content-type"].startswith("application/problem+json")
            assert third.json()["type"] == MISMATCH, (template, third.text)
        replayed.append(template)
    # the routes that did not honour a key before, and the usual commands, all took one
    must = {
        "/v1/orgs",
        "/v1/orgs/{org}/keys",
        "/v1/orgs/{org}/agents",
        "/v1/orgs/{org}/agents/{slug}/keys",
        "/v1/orgs/{org}/agents/{slug}/pause",
        "/v1/orgs/{org}/agents/{slug}/resume",
        "/v1/orgs/{org}/projects",
        "/v1/projects/{project_id}/exceptions",
        "/v1/projects/{project_id}/findings",
        "/v1/projects/{project_id}/scans",
        "/v1/projects/{project_id}/tasks/{task_id}/heartbeat",
        "/v1/projects/{project_id}/tasks/{task_id}/release",
        "/v1/promotions/{promotion_id}/evaluate",
    }
    assert must <= set(replayed), (sorted(must - set(replayed)), refused)
    print("refused first time:", refused)
    assert len(replayed) >= 20, refused


@pytest.mark.parametrize("route", ["key", "agent", "agent-key"])
async def test_a_credential_is_minted_once_and_its_secret_never_shown_again(
    stack: Stack, route: str
):
    org = slug()
    r = await stack.http.post("/v1/orgs", json={"slug": org, "name": org}, headers=stack.admin)
    assert r.status_code == 201, r.text
    await stack.http.post(
        f"/v1/orgs/{org}/agents",
        json={"slug": "bot", "name": "b", "owner": "o"},
        headers=stack.admin,
    )
    path, body = {
        "key": (f"/v1/orgs/{org}/keys", {"name": "ci", "roles": ["viewer"]}),
        "agent": (f"/v1/orgs/{org}/agents", {"slug": "bot2", "name": "b", "owner": "o"}),
        "agent-key": (f"/v1/orgs/{org}/agents/bot/keys", None),
    }[route]
    key = str(uuid.uuid4())
    first = await _send(stack.http, path, body, stack.admin, key)
    second = await _send(stack.http, path, body, stack.admin, key)
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert first.json()["token"]
    assert "token" not in second.json()
    assert second.json()["key_id"] == first.json()["key_id"]
    keys = await stack.http.get(
        f"/v1/orgs/{org}/keys",
        params={"min_position": second.json()["position"]},
        headers=stack.admin,
    )
    ids = [k.get("key_id", k.get("id")) for k in keys.json()["items"]]
    assert ids.count(first.json()["key_id"]) == 1
    # the one credential works; nothing else was minted by the replay
    minted = {"Authorization": f"Bearer {first.json()['token']}"}
    assert (await stack.http.get("/v1/whoami", headers=minted)).status_code == 200
    assert len(ids) == 2, keys.json()  # the first agent's own key, and this one
