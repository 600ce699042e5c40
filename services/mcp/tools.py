"""The MCP tools: each validates its arguments, then calls the Application command or the read
query the HTTP route calls, with the caller's Principal; the answer is plain JSON data.

A tool whose input is a contract command (`body`) takes that command's fields as arguments and
validates them with the same msgspec struct as HTTP and NATS; its own arguments (`args`) are
the ids and options the HTTP route has in its path and query.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta, Struct

from contracts.commands import Commit, Environment
from contracts.governance import RequestException, RequestPromotion
from contracts.tasks import ClaimTask, CompleteTask, ReleaseTask, TaskHeartbeat
from domain.authz import Action, Principal
from domain.errors import InvalidInput, NotFound
from domain.kernel import CommandResult, command_idempotency
from domain.remediation import Target, remediation_for
from projections import task_queries as tq
from services.api.context import ApiContext
from services.api.routes import finding_state, scope_of, visible, visible_project
from services.reports import CHUNK, ScanUpload, submit_upload


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call: the process's shared context and the caller, authenticated afresh."""

    ctx: ApiContext
    principal: Principal


Run = Callable[[Call, Any, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool: its arguments (own struct, plus a contract command's fields) and its handler."""

    name: str
    title: str
    description: str
    args: type[Struct]
    run: Run
    body: type[Struct] | None = None
    read_only: bool = False


IdemKey = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        description="Retry safely: the same key with the same arguments answers the first "
        "result again (nothing is recorded twice); with other arguments it is refused",
    ),
]
MinPosition = Annotated[
    int,
    Meta(
        ge=0,
        description="Read your writes: wait (bounded) until the read models reached this "
        "`position` (from an earlier answer)",
    ),
]
TaskStatus = Literal["open", "claimed", "completed", "verified"]
Priority = Literal["p1", "p2", "p3", "p4"]


class Args(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every tool's own arguments: unknown arguments are an error."""


class FindingArgs(Args, frozen=True, kw_only=True, forbid_unknown_fields=True):
    finding_id: UUID


class ProjectCommandArgs(Args, frozen=True, kw_only=True, forbid_unknown_fields=True):
    project_id: UUID
    idempotency_key: IdemKey | None = None


class ListTasksArgs(Args, frozen=True, kw_only=True, forbid_unknown_fields=True):
    project_id: UUID
    status: TaskStatus | None = None
    priority: Priority | None = None
    mine: Annotated[bool, Meta(description="Only the packets I hold")] = False
    cursor: Annotated[int, Meta(description="`next_cursor` of the previous page")] | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100
    min_position: MinPosition | None = None


class TaskArgs(Args, frozen=True, kw_only=True, forbid_unknown_fields=True):
    task_id: UUID
    min_position: MinPosition | None = None


class TaskCommandArgs(Args, frozen=True, kw_only=True, forbid_unknown_fields=True):
    task_id: UUID
    idempotency_key: IdemKey | None = None


class TaskRef(Args, frozen=True, kw_only=True, forbid_unknown_fields=True):
    task_id: UUID


class CheckGateArgs(Args, frozen=True, kw_only=True, forbid_unknown_fields=True):
    promotion_id: (
        Annotated[UUID, Meta(description="The promotion (or give project_id and environment)")]
        | None
    ) = None
    project_id: UUID | None = None
    environment: Annotated[Environment, Meta(description="Its open promotion")] | None = None
    evaluate: Annotated[
        bool, Meta(description="Evaluate the gate again now (a new decision) before explaining")
    ] = False


class SubmitScanArgs(Args, frozen=True, kw_only=True, forbid_unknown_fields=True):
    project_id: UUID
    report: Annotated[
        str | dict[str, Any] | list[Any],
        Meta(
            description="The scanner's report: its JSON text as the tool wrote it (SARIF, "
            "Semgrep, Bandit, Trivy, Grype, Checkov, Gitleaks, Snyk, pip-audit, npm audit, "
            "CycloneDX)"
        ),
    ]
    tool: Annotated[str, Meta(max_length=50, description="Force a format")] | None = None
    target: Annotated[str, Meta(min_length=1, max_length=500)] = "default"
    branch: Annotated[str, Meta(min_length=1, max_length=250)] = "main"
    full: Annotated[
        bool, Meta(description="A full scan fixes findings of its scope it no longer reports")
    ] = True
    commit: Commit | None = None
    idempotency_key: IdemKey | None = None


def answer(result: CommandResult) -> dict[str, Any]:
    """A command's answer: the ids it touched and the `position` to read it back at."""
    return {**result.body(), "replayed": result.replayed}


def _thread(fn: Callable[..., CommandResult], *args: Any) -> Awaitable[CommandResult]:
    return asyncio.to_thread(fn, *args)


# --- tasks ------------------------------------------------------------------------------------


async def list_tasks(call: Call, args: ListTasksArgs, _: None) -> dict[str, Any]:
    ctx, principal = call.ctx, call.principal
    await ctx.wait_for(args.min_position)
    await visible_project(ctx, principal, args.project_id, Action.TASK_READ)
    page = await tq.tasks(
        ctx.pool,
        str(args.project_id),
        scope_of(principal),
        status=args.status,
        holder=principal.actor if args.mine else None,
        priority=args.priority,
        after=args.cursor,
        limit=args.limit,
    )
    return {"items": page.items, "next_cursor": page.next_cursor}


async def get_task(call: Call, args: TaskArgs, _: None) -> dict[str, Any]:
    await call.ctx.wait_for(args.min_position)
    row = await tq.task(call.ctx.pool, str(args.task_id), scope_of(call.principal))
    return visible(row, f"task {args.task_id}", call.principal, Action.TASK_READ)


async def claim_task(call: Call, args: TaskCommandArgs, cmd: ClaimTask) -> dict[str, Any]:
    idem = command_idempotency(args.idempotency_key, "claimTask", args.task_id, cmd)
    pearl = call.ctx.pearl
    return answer(await _thread(pearl.claim_task, call.principal, args.task_id, cmd, idem))


async def heartbeat_task(call: Call, args: TaskRef, cmd: TaskHeartbeat) -> dict[str, Any]:
    pearl = call.ctx.pearl
    return answer(await _thread(pearl.heartbeat_task, call.principal, args.task_id, cmd))


async def complete_task(call: Call, args: TaskCommandArgs, cmd: CompleteTask) -> dict[str, Any]:
    idem = command_idempotency(args.idempotency_key, "completeTask", args.task_id, cmd)
    pearl = call.ctx.pearl
    return answer(await _thread(pearl.complete_task, call.principal, args.task_id, cmd, idem))


async def release_task(call: Call, args: TaskRef, cmd: ReleaseTask) -> dict[str, Any]:
    pearl = call.ctx.pearl
    return answer(await _thread(pearl.release_task, call.principal, args.task_id, cmd))


# --- findings, gates, promotions, exceptions, scans ------------------------------------------


async def get_finding(call: Call, args: FindingArgs, _: None) -> dict[str, Any]:
    finding = await asyncio.to_thread(call.ctx.pearl.get_finding, call.principal, args.finding_id)
    return {**finding_state(finding), "remediation": remediation_for([Target.of(finding)])}


async def check_gate(call: Call, args: CheckGateArgs, _: None) -> dict[str, Any]:
    ctx, principal = call.ctx, call.principal
    promotion_id = args.promotion_id or await _open_promotion(call, args)
    if args.evaluate:
        await ctx.gate.evaluate_now(principal, promotion_id)
    return await ctx.gate.explanation(principal, promotion_id)


async def _open_promotion(call: Call, args: CheckGateArgs) -> UUID:
    """The open promotion into an environment, from the environment's own aggregate."""
    if args.project_id is None or args.environment is None:
        raise InvalidInput("give promotion_id, or project_id and environment")
    env = await asyncio.to_thread(
        call.ctx.pearl.get_environment, call.principal, args.project_id, args.environment
    )
    if env is None or env.pending is None:
        raise NotFound(f"no open promotion into {args.environment!r}; request one first")
    return UUID(env.pending)


async def request_promotion(
    call: Call, args: ProjectCommandArgs, cmd: RequestPromotion
) -> dict[str, Any]:
    idem = command_idempotency(args.idempotency_key, "requestPromotion", args.project_id, cmd)
    result = await call.ctx.gate.request_promotion(call.principal, args.project_id, cmd, idem)
    return answer(result)


async def request_exception(
    call: Call, args: ProjectCommandArgs, cmd: RequestException
) -> dict[str, Any]:
    idem = command_idempotency(args.idempotency_key, "requestException", args.project_id, cmd)
    pearl = call.ctx.pearl
    return answer(
        await _thread(pearl.request_exception, call.principal, args.project_id, cmd, idem)
    )


async def submit_scan(call: Call, args: SubmitScanArgs, _: None) -> dict[str, Any]:
    ctx = call.ctx
    data = (
        args.report.encode() if isinstance(args.report, str) else msgspec.json.encode(args.report)
    )
    upload = ScanUpload(
        args.project_id,
        args.tool,
        args.target,
        args.branch,
        args.full,
        args.commit,
        args.idempotency_key,
    )
    result = await submit_upload(
        ctx.pearl, ctx.reports, call.principal, upload, _chunks(data), ctx.settings.max_report_bytes
    )
    return answer(result)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            "list_tasks",
            "List remediation tasks",
            "Remediation task packets of a project, most urgent first: each names the "
            "findings to fix, the remediation spec, its guard rails (paths, size) and who holds "
            "it. Cursor-paginated (`next_cursor`).",
            ListTasksArgs,
            list_tasks,
            read_only=True,
        ),
        Tool(
            "get_task",
            "Get a remediation task",
            "One task packet: targets, remediation spec, guard rails, status, holder and lease.",
            TaskArgs,
            get_task,
            read_only=True,
        ),
        Tool(
            "claim_task",
            "Claim a task",
            "Take an open task packet with a lease (`ttl_seconds`, renewed by heartbeat_task). "
            "Of many racing claims exactly one wins; the others get `lease-conflict`.",
            TaskCommandArgs,
            claim_task,
            ClaimTask,
        ),
        Tool(
            "heartbeat_task",
            "Renew a task lease",
            "Keep holding a claimed task packet for another `ttl_seconds`.",
            TaskRef,
            heartbeat_task,
            TaskHeartbeat,
        ),
        Tool(
            "complete_task",
            "Complete a task",
            "Report the change made for a held task packet: branch, commit or PR, the files and "
            "number of lines changed (they must keep to the packet's guard rails) and a summary. "
            "The next full scan verifies it. Needs autonomy `act`.",
            TaskCommandArgs,
            complete_task,
            CompleteTask,
        ),
        Tool(
            "release_task",
            "Release a task",
            "Give a held task packet back: abandoned (someone may try again) or `failed`.",
            TaskRef,
            release_task,
            ReleaseTask,
        ),
        Tool(
            "get_finding",
            "Get a finding and its remediation",
            "A finding's current state and its remediation spec: problem, locations, guidance "
            "and how the fix will be verified.",
            FindingArgs,
            get_finding,
            read_only=True,
        ),
        Tool(
            "check_gate",
            "Check a promotion gate",
            "The gate decision of a promotion (by id, or the open one into a project's "
            "environment) and why: the failed rules and what would pass them.",
            CheckGateArgs,
            check_gate,
        ),
        Tool(
            "request_promotion",
            "Request a promotion",
            "Request promoting a registered version into the next environment; the gate is "
            "evaluated at once (`gate` in the answer) and again whenever its inputs change.",
            ProjectCommandArgs,
            request_promotion,
            RequestPromotion,
        ),
        Tool(
            "request_exception",
            "Request a risk exception",
            "Ask to accept the risk of findings (by id, a rule or a CWE) until `expires_at`, "
            "with a justification; a person with the approver role decides.",
            ProjectCommandArgs,
            request_exception,
            RequestException,
        ),
        Tool(
            "submit_scan",
            "Submit a scan report",
            "Ingest a scanner report into a project; answers the counts of new, seen again, "
            "reopened and fixed findings. The same report again changes nothing.",
            SubmitScanArgs,
            submit_scan,
        ),
    )
}
