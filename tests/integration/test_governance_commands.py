"""Approvals decided over the bus and from the CLI, against real NATS and PostgreSQL: each
decision is an event, and the gatekeeper (or the API right after an HTTP decision) evaluates
the promotion's gate again. Refusals over the bus are dead-lettered and audited."""

from __future__ import annotations

import asyncio
import shlex
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from services.cli.main import main
from tests.support.bus import dead_lettered
from tests.support.helpers import eventually, issue_key, make_org_and_project, publish_command
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
DECIDED = "pearl.approval_request.decided.v1"
DENIAL = "pearl.access_denial.recorded.v1"
SIGN_OFF = {"rules": [{"id": "sign-off", "kind": "approvals", "count": 1, "roles": ["approver"]}]}


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def gated_project(stack: Stack) -> tuple[str, str, dict[str, str], dict[str, str]]:
    """An org and project whose dev gate needs one approver: (org, project, requester,
    approver). The requester is an approver too: only separation of duties refuses it."""
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    requester = await issue_key(stack.http, stack.admin, org, "operator", "approver")
    approver = await issue_key(stack.http, stack.admin, org, "approver")
    await ok(
        await stack.http.put(
            f"/v1/projects/{project}/policies/dev",
            json={"policy": SIGN_OFF, "reason": "a person signs off"},
            headers=stack.admin,
        )
    )
    return org, project, requester, approver


async def promotion_row(stack: Stack, promotion_id: str) -> dict[str, Any]:
    return await ok(await stack.http.get(f"/v1/promotions/{promotion_id}", headers=stack.admin))


async def pending_approval(stack: Stack, project: str) -> dict[str, Any]:
    """The project's one pending approval request, once the read side has it."""

    async def found() -> list[dict[str, Any]]:
        r = await stack.http.get(
            f"/v1/projects/{project}/approvals", params={"status": "pending"}, headers=stack.admin
        )
        return list((await ok(r))["items"])

    [request] = await eventually(found)
    return request


async def denials(stack: Stack, org: str, subject: str) -> list[dict[str, Any]]:
    """The access-denial audit entries of `org` for commands on `subject`."""
    r = await stack.http.get(
        "/v1/audit", params={"org": org, "type": DENIAL, "limit": 1000}, headers=stack.admin
    )
    return [e for e in (await ok(r))["items"] if e["data"]["resource"] == subject]


async def test_approval_decided_over_nats_is_an_event_and_the_gatekeeper_passes_the_gate(
    stack: Stack,
) -> None:
    org, project, requester, approver = await gated_project(stack)
    other_org, _, _ = await make_org_and_project(stack.http, stack.admin)
    cmd = stack.subjects.command

    # The version and its promotion arrive over the bus too; the gatekeeper evaluates it.
    version = {"project_id": project, "version": "2.0.0", "commit": COMMIT}
    await publish_command(stack.nc, cmd(org, "version", "register"), version, token_of(requester))
    promote = {"project_id": project, "version": "2.0.0", "to": "dev"}
    await publish_command(stack.nc, cmd(org, "promotion", "request"), promote, token_of(requester))
    request = await pending_approval(stack, project)
    rid, pid = request["id"], request["promotion_id"]

    async def status_is(wanted: str) -> bool:
        return (await promotion_row(stack, pid))["status"] == wanted

    await eventually(lambda: status_is("awaiting_approval"))

    # The requester of the promotion may not decide: DLQ `forbidden`, audited, nothing decided.
    decide = cmd(org, "approval", "decide")
    body = {"request_id": rid, "decision": "approve"}
    marker = str(uuid.uuid4())
    await publish_command(stack.nc, decide, body, token_of(requester), command_id=marker)
    msg = await dead_lettered(stack, marker)
    assert msg.headers["Pearl-Dlq-Code"] == "forbidden"
    assert "requester" in msg.headers["Pearl-Dlq-Reason"]
    assert "Authorization" not in msg.headers
    [denial] = await eventually(lambda: denials(stack, org, decide))
    assert denial["data"]["code"] == "forbidden" and denial["data"]["channel"] == "nats"

    # An approver of the request's org, on another org's subject: refused as not found.
    elsewhere = cmd(other_org, "approval", "decide")
    marker = str(uuid.uuid4())
    await publish_command(stack.nc, elsewhere, body, token_of(approver), command_id=marker)
    msg = await dead_lettered(stack, marker)
    assert msg.headers["Pearl-Dlq-Code"] == "not-found"
    assert msg.headers["Pearl-Original-Subject"] == elsewhere
    [denial] = await eventually(lambda: denials(stack, org, elsewhere))
    assert denial["data"]["code"] == "cross-org"
    assert await denials(stack, other_org, elsewhere) == []
    untouched = await ok(await stack.http.get(f"/v1/approvals/{rid}", headers=stack.admin))
    assert untouched["status"] == "pending" and untouched["decisions"] == []

    # The approver decides over the bus: an event, and the gatekeeper passes the gate.
    await publish_command(stack.nc, decide, body, token_of(approver))
    await eventually(lambda: status_is("passed"))
    approval = await ok(await stack.http.get(f"/v1/approvals/{rid}", headers=stack.admin))
    assert approval["status"] == "approved"
    assert [h["type"] for h in approval["history"]][-1] == DECIDED
    state = await promotion_row(stack, pid)
    last = state["decisions"][-1]
    assert (last["result"], last["trigger"], last["actor"]) == (
        "passed",
        DECIDED,
        "system:gatekeeper",
    )


async def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def served_api(stack: Stack) -> AsyncIterator[str]:
    """The stack's API on a real local port (the CLI is a separate HTTP client)."""
    api = stack.http._transport.app  # type: ignore[attr-defined]
    port = await free_port()
    server = uvicorn.Server(
        uvicorn.Config(api, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:

        async def started() -> bool:
            return server.started

        await eventually(started, timeout=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


async def pearl(monkeypatch: pytest.MonkeyPatch, key: dict[str, str], command: str) -> int:
    """Run the `pearl` CLI entry point with a key (in a thread: the API serves on this loop)."""
    monkeypatch.setenv("PEARL_API_KEY", token_of(key))
    return await asyncio.to_thread(main, shlex.split(command))


async def test_pearl_approval_decide_from_the_cli_records_the_decision_and_passes_the_gate(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, project, requester, approver = await gated_project(stack)
    base = f"/v1/projects/{project}"
    version = {"version": "3.0.0", "commit": COMMIT}
    await ok(await stack.http.post(f"{base}/versions", json=version, headers=requester), 201)
    promoted = await ok(
        await stack.http.post(
            f"{base}/promotions", json={"version": "3.0.0", "to": "dev"}, headers=requester
        ),
        201,
    )
    rid, pid = promoted["approval_request_id"], promoted["id"]
    assert promoted["gate"]["result"] == "awaiting_approval"

    # A body naming another request than the path is refused, over HTTP too.
    r = await stack.http.post(
        f"/v1/approvals/{rid}/decisions",
        json={"request_id": str(uuid.uuid4()), "decision": "approve"},
        headers=approver,
    )
    assert r.status_code == 422 and "request_id" in r.json()["detail"]

    async with served_api(stack) as url:
        monkeypatch.setenv("PEARL_API_URL", url)
        capsys.readouterr()
        listing = f"approval list --project {project} --status pending"
        assert await pearl(monkeypatch, approver, listing) == 0
        listed = capsys.readouterr().out
        assert rid in listed and "pending" in listed and "0/1" in listed

        # The requester is refused: non-zero, and the problem's detail on stderr.
        assert await pearl(monkeypatch, requester, f"approval decide {rid} approve") == 2
        refused = capsys.readouterr()
        assert "403" in refused.err and "requester" in refused.err and refused.out == ""

        approve = f"approval decide {rid} approve --reason 'reviewed the release notes'"
        assert await pearl(monkeypatch, approver, approve) == 0
        decided = capsys.readouterr().out
        assert f"approved: approval request {rid} (1/1 approvals)" in decided
        assert f"promotion {pid}: gate passed" in decided

        # Deciding again is a conflict, reported the same way.
        reject = f"approval decide {rid} reject --reason 'changed my mind'"
        assert await pearl(monkeypatch, approver, reject) == 2
        assert "409" in capsys.readouterr().err

    approval = await ok(await stack.http.get(f"/v1/approvals/{rid}", headers=stack.admin))
    assert approval["status"] == "approved"
    assert approval["decisions"][0]["reason"] == "reviewed the release notes"
    assert [h["type"] for h in approval["history"]][-1] == DECIDED
    assert (await promotion_row(stack, pid))["status"] == "passed"
