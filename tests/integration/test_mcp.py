"""`pearl mcp` against real PostgreSQL and NATS, driven by the MCP SDK's own client: agents
work task packets within their autonomy levels, refusals are tool errors with the HTTP
problem's code and audited, and findings, gates, promotions, exceptions and scans go through
the same Application commands and queries as the HTTP API (in process, over streamable HTTP,
and `pearl mcp` over stdio as a subprocess)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from contracts.agents import PauseAgent, RegisterAgent
from contracts.tasks import CreateTasks
from domain.authz import Principal
from projections import queries
from services.api.context import ApiContext
from services.mcp.server import MCP_PATH, PearlMcp, http_app
from services.reports import ReportStore
from tests.integration.test_scans import sample
from tests.support.helpers import eventually, finding_body, make_org_and_project, slug
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
DENIAL = "pearl.access_denial.recorded.v1"


@pytest.fixture
def ctx(stack: Stack) -> ApiContext:
    """The context `pearl mcp` builds: the API's, over the test stack's connections."""
    reports = ReportStore(stack.nc.jetstream(), stack.subjects)
    return ApiContext(
        settings=stack.settings, pearl=stack.app, pool=stack.pool, nc=stack.nc, reports=reports
    )


@contextlib.asynccontextmanager
async def agent(ctx: ApiContext, token: str) -> AsyncIterator[Client]:
    """An MCP client session on a server holding one agent's credential (as stdio does)."""
    async with Client(PearlMcp(ctx, token).server) as client:
        yield client


async def ok(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def refused(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result: CallToolResult = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    assert result.structured_content is not None
    error: dict[str, Any] = result.structured_content["error"]
    assert error["type"] == f"urn:pearl:problem:{error['code']}"
    return error


async def admin_of(stack: Stack) -> Principal:
    return await asyncio.to_thread(stack.app.authenticate, stack.admin_token)


async def register_agent(stack: Stack, org: str, **autonomy: str) -> tuple[str, str]:
    """A registered agent of `org` with these levels (`any` is `*`): its slug and API key."""
    name = slug("agent")
    levels = {("*" if env == "any" else env): level for env, level in autonomy.items()}
    cmd = RegisterAgent(slug=name, name=name, owner="platform team", autonomy=levels)
    result = await asyncio.to_thread(stack.app.register_agent, await admin_of(stack), org, cmd)
    return name, result.secret["token"]


async def project_with_task(stack: Stack) -> tuple[str, str, str, int]:
    """An org and project with one finding in app/db.py cut into one task packet."""
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    r = await stack.http.post(
        f"/v1/projects/{project}/findings", json=finding_body(), headers=stack.admin
    )
    assert r.status_code == 201, r.text
    cmd = CreateTasks(finding_ids=[r.json()["id"]])
    result = await asyncio.to_thread(
        stack.app.create_tasks, await admin_of(stack), UUID(project), cmd, []
    )
    [task] = result.ids["created"]
    return org, project, task, result.position


async def denials(stack: Stack, org: str) -> list[dict[str, Any]]:
    page = await queries.audit(stack.pool, org, type_=DENIAL, limit=100)
    return [entry["data"] for entry in page.items]


async def test_tools_are_listed_with_json_schemas_from_the_contracts(stack: Stack, ctx):
    org, _, _ = await make_org_and_project(stack.http, stack.admin)
    _, token = await register_agent(stack, org)
    async with Client(PearlMcp(ctx, token).server, mode="legacy") as client:  # initialize
        assert client.server_info is not None and client.server_info.name == "pearl"
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {
        "list_tasks",
        "get_task",
        "claim_task",
        "heartbeat_task",
        "complete_task",
        "release_task",
        "get_finding",
        "check_gate",
        "request_promotion",
        "request_exception",
        "submit_scan",
    } <= set(tools)
    complete = tools["complete_task"].input_schema
    assert set(complete["required"]) == {"task_id", "changed_files", "changed_lines", "summary"}
    assert complete["properties"]["changed_lines"]["minimum"] == 0
    assert tools["get_task"].annotations and tools["get_task"].annotations.read_only_hint


async def test_propose_agent_claims_but_completing_is_refused_and_audited(stack: Stack, ctx):
    org, project, task, position = await project_with_task(stack)
    name, token = await register_agent(stack, org, any="propose")
    async with agent(ctx, token) as client:
        listed = await ok(client, "list_tasks", project_id=project, min_position=position)
        assert [t["id"] for t in listed["items"]] == [task]
        claimed = await ok(client, "claim_task", task_id=task, ttl_seconds=600)
        assert claimed["holder"] == f"agent:{name}"
        await ok(client, "heartbeat_task", task_id=task)
        error = await refused(
            client,
            "complete_task",
            task_id=task,
            changed_files=["app/db.py"],
            changed_lines=3,
            summary="parameterized the query",
        )
    assert error["code"] == "autonomy-exceeded" and error["status"] == 403  # a Forbidden
    assert "needs 'act'" in error["detail"]
    [denial] = await eventually(lambda: denials(stack, org))
    assert denial["channel"] == "mcp" and denial["code"] == "autonomy-exceeded"
    assert task in denial["resource"]


async def test_act_agent_claims_and_completes_within_its_guard_rails(stack: Stack, ctx):
    org, _, task, _ = await project_with_task(stack)
    _, token = await register_agent(stack, org, any="act")
    async with agent(ctx, token) as client:
        first = await ok(client, "claim_task", task_id=task, idempotency_key="claim-1")
        again = await ok(client, "claim_task", task_id=task, idempotency_key="claim-1")
        assert again["replayed"] is True and again["position"] == first["position"]
        released = await ok(client, "release_task", task_id=task, reason="back after lunch")
        assert released["status"] == "open"
        await ok(client, "claim_task", task_id=task, ttl_seconds=300)
        outside = await refused(
            client,
            "complete_task",
            task_id=task,
            changed_files=["app/db.py", "deploy/prod.yaml"],
            changed_lines=3,
            summary="also changed the deployment",
        )
        assert outside["code"] == "guard-rail"
        done = await ok(
            client,
            "complete_task",
            task_id=task,
            branch="fix/sqli",
            commit="0123abc",
            changed_files=["app/db.py"],
            changed_lines=3,
            summary="parameterized the query",
        )
        assert done["status"] == "completed" and done["replayed"] is False
        seen = await ok(client, "get_task", task_id=task, min_position=done["position"])
    assert seen["status"] == "completed"
    assert seen["outcome"]["changed_files"] == ["app/db.py"]


async def test_observe_agent_reads_tasks_but_may_not_claim_them(stack: Stack, ctx):
    org, project, task, position = await project_with_task(stack)
    _, token = await register_agent(stack, org, any="observe")
    async with agent(ctx, token) as client:
        listed = await ok(client, "list_tasks", project_id=project, min_position=position)
        assert [t["id"] for t in listed["items"]] == [task]
        packet = await ok(client, "get_task", task_id=task)
        assert packet["guard_rails"]["allowed_paths"] == ["app/db.py"]
        error = await refused(client, "claim_task", task_id=task)
    assert error["code"] == "autonomy-exceeded"


async def test_paused_agent_is_refused_at_its_next_call(stack: Stack, ctx):
    org, project, task, _ = await project_with_task(stack)
    name, token = await register_agent(stack, org, any="act")
    async with agent(ctx, token) as client:
        await ok(client, "claim_task", task_id=task)
        await asyncio.to_thread(
            stack.app.pause_agent,
            await admin_of(stack),
            org,
            name,
            PauseAgent(reason="went off script"),
            [UUID(task)],
        )
        error = await refused(client, "list_tasks", project_id=project)
        assert error["code"] == "autonomy-exceeded" and "paused" in error["detail"]
        error = await refused(
            client,
            "complete_task",
            task_id=task,
            changed_files=["app/db.py"],
            changed_lines=1,
            summary="too late",
        )
    assert error["code"] == "autonomy-exceeded"


async def test_another_orgs_task_is_not_found_and_the_attempt_is_audited(stack: Stack, ctx):
    _, _, task, _ = await project_with_task(stack)
    other, _, _ = await make_org_and_project(stack.http, stack.admin)
    _, token = await register_agent(stack, other, any="act")
    async with agent(ctx, token) as client:
        assert (await refused(client, "get_task", task_id=task))["code"] == "not-found"
        error = await refused(client, "claim_task", task_id=task)
    assert error["code"] == "not-found" and error["status"] == 404
    assert error["detail"] == f"task {task} not found"  # the other org is never named
    found = await eventually(lambda: denials(stack, other))
    assert any(d["code"] == "cross-org" and d["channel"] == "mcp" for d in found)


async def test_bad_arguments_and_bad_credentials_are_tool_errors(stack: Stack, ctx):
    org, _, task, _ = await project_with_task(stack)
    _, token = await register_agent(stack, org, any="act")
    async with agent(ctx, token) as client:
        error = await refused(client, "claim_task", task_id=task, ttl_seconds=5)
        assert error["code"] == "invalid-input" and "ttl_seconds" in error["detail"]
        error = await refused(client, "claim_task", task_id="not-a-uuid")
        assert error["code"] == "invalid-input"
    async with agent(ctx, "pk_nobody_0000000000000000deadbeefdeadbeefdeadbeef") as client:
        error = await refused(client, "get_task", task_id=task)
    assert error["code"] == "unauthenticated"


async def test_real_scan_finding_remediation_gate_promotion_and_exception(stack: Stack, ctx):
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    policy = {"rules": [{"id": "no-high", "kind": "max_findings", "severity": "high", "max": 0}]}
    r = await stack.http.put(
        f"/v1/projects/{project}/policies/dev",
        json={"policy": policy, "reason": "no high findings in dev"},
        headers=stack.admin,
    )
    assert r.status_code == 200, r.text
    r = await stack.http.post(
        f"/v1/projects/{project}/versions",
        json={"version": "3.13.0", "commit": COMMIT, "author": "human:alice"},
        headers=stack.admin,
    )
    assert r.status_code == 201, r.text
    expected = json.loads(sample("expected.json"))["semgrep-pyyaml-3.13.json"]
    _, token = await register_agent(stack, org, any="propose")
    async with agent(ctx, token) as client:
        scan = await ok(
            client,
            "submit_scan",
            project_id=project,
            report=sample("semgrep-pyyaml-3.13.json").decode(),
            target="pyyaml",
            commit=COMMIT,
        )
        counts = scan["counts"]
        assert expected["distinct_rule_path"] <= counts["new"] <= expected["total"]
        assert counts["total"] == counts["new"] and counts["fixed"] == 0

        await queries.wait_for_position(stack.pool, scan["position"], 15)
        [high] = (await queries.findings(stack.pool, org, project, severity="high")).items
        finding = await ok(client, "get_finding", finding_id=str(high["id"]))
        assert finding["rule_id"] == "python.yaml-load-unsafe"
        spec = finding["remediation"]
        assert spec["locations"][0]["path"] == "examples/yaml-highlight/yaml_hl.py"
        assert spec["guidance"] and "semgrep" in spec["acceptance"]["text"]

        promotion = await ok(
            client, "request_promotion", project_id=project, version="3.13.0", to="dev"
        )
        assert promotion["gate"]["result"] == "failed"
        gate = await ok(client, "check_gate", project_id=project, environment="dev")
        assert gate["promotion_id"] == promotion["id"] and gate["result"] == "failed"
        assert [rule["rule_id"] for rule in gate["failed"]] == ["no-high"]
        assert "no-high" in gate["text"]
        again = await ok(client, "check_gate", promotion_id=promotion["id"], evaluate=True)
        assert again["decision_id"] != gate["decision_id"]

        expires = (datetime.now(UTC) + timedelta(days=7)).isoformat()
        exception = await ok(
            client,
            "request_exception",
            project_id=project,
            environment="dev",
            finding_ids=[str(high["id"])],
            justification="examples are not shipped with the library",
            expires_at=expires,
        )
        assert exception["status"] == "requested"
        assert (await refused(client, "check_gate", project_id=project))["code"] == (
            "invalid-input"
        )


async def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_streamable_http_authenticates_every_request_by_its_bearer_key(stack: Stack, ctx):
    org, project, task, position = await project_with_task(stack)
    _, observer = await register_agent(stack, org, any="observe")
    actor_name, actor = await register_agent(stack, org, any="act")
    port = await free_port()
    server = uvicorn.Server(
        uvicorn.Config(http_app(PearlMcp(ctx)), port=port, log_config=None, lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}{MCP_PATH}"
    try:

        async def started() -> bool:
            return server.started

        await eventually(started, timeout=10)
        async with httpx.AsyncClient() as plain:
            r = await plain.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"

        async def call(token: str, tool: str, **arguments: Any) -> CallToolResult:
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=30) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                return await client.call_tool(tool, arguments)

        listed = await call(observer, "list_tasks", project_id=project, min_position=position)
        assert not listed.is_error and listed.structured_content is not None
        assert [t["id"] for t in listed.structured_content["items"]] == [task]
        refusal = await call(observer, "claim_task", task_id=task)
        assert refusal.is_error and refusal.structured_content is not None
        assert refusal.structured_content["error"]["code"] == "autonomy-exceeded"
        claimed = await call(actor, "claim_task", task_id=task)
        assert not claimed.is_error and claimed.structured_content is not None
        assert claimed.structured_content["holder"] == f"agent:{actor_name}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


async def test_pearl_mcp_over_stdio_serves_the_agent_of_its_api_key(stack: Stack):
    org, project, task, position = await project_with_task(stack)
    name, token = await register_agent(stack, org, any="propose")
    settings = stack.settings
    env = {
        "DATABASE_URL": settings.database_url or "",
        "NATS_URL": settings.nats_url or "",
        "PEARL_SUBJECT_ROOT": settings.subject_root,
        "PEARL_API_KEY": token,
        "PEARL_LOG_LEVEL": "WARNING",
    }
    pearl = Path(sys.executable).with_name("pearl")  # the installed console script
    command, args = (
        (str(pearl), []) if pearl.exists() else (sys.executable, ["-m", "services.cli.main"])
    )
    params = StdioServerParameters(
        command=command,
        args=[*args, "mcp", "--transport", "stdio"],
        env={**os.environ, **env},
        cwd=str(ROOT),
    )
    async with Client(params, read_timeout_seconds=60) as client:
        assert client.server_info is None or client.server_info.name == "pearl"
        listed = await ok(client, "list_tasks", project_id=project, min_position=position)
        assert [t["id"] for t in listed["items"]] == [task]
        claimed = await ok(client, "claim_task", task_id=task)
        assert claimed["holder"] == f"agent:{name}"
