"""The MCP adapter: tool listing, one tool call = authenticate, validate, call, map errors.

Every call authenticates the agent afresh (a paused agent is refused at its next call) with
the API's rate limits, and runs with channel `mcp` (refusals the domain audits name it). A
domain error becomes a tool error result carrying the HTTP problem's stable code; a refusal
the domain did not audit itself (`recorded`) is recorded here, like HTTP and NATS do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import msgspec
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    ToolAnnotations,
)
from mcp_types import Tool as McpTool
from starlette.types import ASGIApp, Receive, Scope, Send

from domain.authz import SYSTEM_ORG, Principal
from domain.base import current_channel
from domain.base import current_traceparent as event_traceparent
from domain.errors import CrossOrg, Forbidden, InvalidInput, PearlError, Unauthenticated
from services.api.context import ApiContext, ProjectionLag
from services.api.problems import TYPE_BASE, status_for
from services.api.security import RateLimited
from services.mcp.tools import TOOLS, Call, Tool
from services.settings import Settings
from services.telemetry import current_traceparent, span_from

log = logging.getLogger(__name__)
VERSION = "0.1.0"
CHANNEL = "mcp"
MCP_PATH = "/mcp"
MCP_PORT = 8765
DENIALS = (Unauthenticated, Forbidden, CrossOrg)
INSTRUCTIONS = (
    "PeaRL governs what coding agents may change and ship. Work loop: list_tasks (open, most "
    "urgent first) → get_task / get_finding for the remediation spec → claim_task → change "
    "only files within the packet's guard rails → heartbeat_task while working → "
    "complete_task (or release_task). submit_scan ingests a scanner report; check_gate "
    "explains a promotion's gate. What you may do depends on your autonomy level per "
    "environment; a refusal is a tool error with a stable `code` (forbidden, "
    "autonomy-exceeded, guard-rail, lease-conflict, not-found, invalid-input, ...)."
)


def input_schema(tool: Tool) -> dict[str, Any]:
    """The tool's JSON Schema: its own arguments plus its contract command's fields."""
    types: tuple[type[msgspec.Struct], ...] = (tool.args,)
    if tool.body is not None:
        types += (tool.body,)
    _, defs = msgspec.json.schema_components(types, ref_template="#/$defs/{name}")
    own = defs.pop(tool.args.__name__)
    properties = dict(own.get("properties", {}))
    required = list(own.get("required", []))
    if tool.body is not None:
        body = defs.pop(tool.body.__name__)
        for name, prop in body.get("properties", {}).items():
            if name not in properties:  # the id the body carries on the bus is an argument here
                properties[name] = prop
        required += [r for r in body.get("required", []) if r not in required]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if defs:
        schema["$defs"] = defs
    return schema


def decode(tool: Tool, arguments: Mapping[str, Any]) -> tuple[Any, Any]:
    """Validate the arguments: the tool's own with its struct, the rest with the contract's."""
    names = {f.encode_name for f in msgspec.structs.fields(tool.args)}
    own = {k: v for k, v in arguments.items() if k in names or tool.body is None}
    try:
        args = msgspec.convert(own, tool.args)
        if tool.body is None:
            return args, None
        rest = {k: v for k, v in arguments.items() if k not in names}
        return args, msgspec.convert(rest, tool.body)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid arguments: {exc}") from None


def tool_error(code: str, detail: str, **extra: Any) -> CallToolResult:
    """A refused or failed call: the HTTP problem's code, status and detail (`error`)."""
    error = {"type": TYPE_BASE + code, "code": code, "detail": detail, **extra}
    return CallToolResult(
        content=[TextContent(type="text", text=f"{code}: {detail}")],
        structured_content={"error": error},
        is_error=True,
    )


def tool_result(data: dict[str, Any]) -> CallToolResult:
    plain = msgspec.to_builtins(data)
    text = msgspec.json.encode(plain).decode()
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=plain)


def bearer(headers: Mapping[str, str] | None) -> str:
    value = (headers or {}).get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    raise Unauthenticated("send the agent's API key as 'Authorization: Bearer <key>'")


def _resource(arguments: Mapping[str, Any]) -> str:
    """What a refused call was about, for the audit record (never the report body)."""
    for key in ("task_id", "finding_id", "promotion_id", "project_id"):
        value = arguments.get(key)
        if isinstance(value, str):
            return f"{key.removesuffix('_id')}/{value[:100]}"
    return ""


class PearlMcp:
    """PeaRL's tools on an MCP server; `token` fixes the credential (stdio), else each HTTP
    request brings its own bearer token."""

    def __init__(self, ctx: ApiContext, token: str | None = None) -> None:
        self.ctx = ctx
        self.token = token
        self.tools = [
            McpTool(
                name=t.name,
                title=t.title,
                description=t.description,
                input_schema=input_schema(t),
                annotations=ToolAnnotations(
                    title=t.title, read_only_hint=t.read_only, destructive_hint=False
                ),
            )
            for t in TOOLS.values()
        ]
        self.server: Server[Any] = Server(
            "pearl",
            version=VERSION,
            title="PeaRL",
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    async def list_tools(
        self, rctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return ListToolsResult(tools=self.tools)

    async def call_tool(
        self, rctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult:
        tool = TOOLS.get(params.name)
        if tool is None:
            raise MCPError(code=INVALID_PARAMS, message=f"unknown tool {params.name!r}")
        arguments = params.arguments or {}
        headers = getattr(rctx.request, "headers", None)  # None over stdio
        address = "stdio" if self.token is not None else _address(rctx.request)
        channel = current_channel.set(CHANNEL)
        principal: Principal | None = None
        try:
            with span_from(headers, f"mcp {tool.name}", **{"mcp.tool": tool.name}):
                traceparent = event_traceparent.set(current_traceparent())
                try:
                    principal = await self.authenticate(headers, address)
                    args, body = decode(tool, arguments)
                    return tool_result(await tool.run(Call(self.ctx, principal), args, body))
                finally:
                    event_traceparent.reset(traceparent)
        except PearlError as exc:
            resource = _resource(arguments)
            if isinstance(exc, DENIALS) and not exc.recorded:
                await self.record_denial(principal, address, tool, resource, exc)
            # Another org's thing is simply not found: its org is never named to the caller.
            gone = f"{resource.replace('/', ' ', 1)} not found".strip()
            detail = gone if isinstance(exc, CrossOrg) else exc.detail
            return tool_error(exc.code, detail, status=status_for(exc))
        except RateLimited as exc:
            return tool_error("rate-limited", str(exc), status=429, retry_after=exc.retry_after)
        except ProjectionLag as exc:
            return tool_error("projection-lag", str(exc), status=503, position=exc.position)
        except Exception:
            log.exception("MCP tool failed unexpectedly", extra={"tool": tool.name})
            return tool_error("internal", "the call failed unexpectedly; it was logged", status=500)
        finally:
            current_channel.reset(channel)

    async def authenticate(self, headers: Mapping[str, str] | None, address: str) -> Principal:
        """The caller of this call, read afresh from the event store (never cached)."""
        if self.token is not None:
            return await self.ctx.authenticate_with(self._fixed_token, address, cached=False)
        return await self.ctx.authenticate_with(lambda: bearer(headers), address, cached=False)

    def _fixed_token(self) -> str:
        if not self.token:
            raise Unauthenticated("set PEARL_API_KEY to the agent's API key")
        return self.token

    async def record_denial(
        self, principal: Principal | None, address: str, tool: Tool, resource: str, exc: PearlError
    ) -> None:
        """A refused call is an audit event of the caller's org (strangers: `system`)."""
        org, actor = (
            (principal.org, principal.actor) if principal else (SYSTEM_ORG, f"anonymous:{address}")
        )
        code = "cross-org" if isinstance(exc, CrossOrg) else exc.code
        try:
            await asyncio.to_thread(
                self.ctx.pearl.record_denial,
                org,
                actor,
                f"mcp {tool.name}",
                resource,
                exc.detail,
                code,
                CHANNEL,
            )
        except Exception:  # a failed record must not turn a refusal into a failure
            log.exception("could not record an access denial")


def _address(request: Any) -> str:
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "unknown")


# --- transports -------------------------------------------------------------------------------


async def serve_stdio(mcp: PearlMcp) -> None:
    """Serve one agent over stdin/stdout until the client closes the pipe."""
    async with stdio_server() as (read, write):
        await mcp.server.run(read, write, mcp.server.create_initialization_options())


def http_app(mcp: PearlMcp, host: str = "127.0.0.1") -> ASGIApp:
    """Streamable HTTP at `/mcp` (stateless, JSON answers); a request without a bearer
    credential is refused with 401 before it reaches the MCP layer."""
    app = mcp.server.streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, json_response=True, host=host
    )
    return require_bearer(app)


def require_bearer(app: ASGIApp) -> ASGIApp:
    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(MCP_PATH):
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            try:
                bearer(headers)
            except Unauthenticated as exc:
                await _unauthorized(send, exc.detail)
                return
        await app(scope, receive, send)

    return guarded


async def _unauthorized(send: Send, detail: str) -> None:
    body = msgspec.json.encode(
        {
            "type": TYPE_BASE + "unauthenticated",
            "title": "Unauthenticated",
            "status": 401,
            "detail": detail,
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def run_mcp(
    settings: Settings, transport: str, *, token: str | None = None, port: int = MCP_PORT
) -> None:
    """`pearl mcp`: build the API's context from settings and serve MCP until stopped."""
    from services.bus import connect
    from services.reports import ReportStore
    from services.runtime import build_app, read_pool, subjects_of

    nats_url, database_url = settings.require_urls()
    app = await asyncio.to_thread(build_app, settings)
    pool = read_pool(database_url, settings.db_pool_size)
    await pool.open()
    nc = await connect(nats_url, "pearl-mcp")
    reports = ReportStore(nc.jetstream(), subjects_of(settings))
    ctx = ApiContext(settings=settings, pearl=app, pool=pool, nc=nc, reports=reports)
    try:
        if transport == "stdio":
            await _check_credential(ctx, token)
            await serve_stdio(PearlMcp(ctx, token or ""))
        else:
            await _serve_http(PearlMcp(ctx), settings.host, port)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
        await pool.close()
        app.close()


async def _check_credential(ctx: ApiContext, token: str | None) -> None:
    """Fail at start, with one clear line, when stdio has no usable credential."""
    if not token:
        raise Unauthenticated("set PEARL_API_KEY (or --token) to the agent's API key")
    await asyncio.to_thread(ctx.authenticator.authenticate, token)


async def _serve_http(mcp: PearlMcp, host: str, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(
        http_app(mcp, host), host=host, port=port, log_config=None, access_log=False
    )
    log.info("MCP over streamable HTTP", extra={"url": f"http://{host}:{port}{MCP_PATH}"})
    await uvicorn.Server(config).serve()
