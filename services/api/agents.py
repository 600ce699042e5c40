"""HTTP controllers for agents (registration, autonomy, kill switch) and task packets."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, Response, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter

from contracts.agents import PauseAgent, RegisterAgent, ResumeAgent, SetAutonomy
from contracts.tasks import ClaimTask, CompleteTask, CreateTasks, ReleaseTask, TaskHeartbeat
from domain.authz import Action, authorize
from domain.kernel import command_idempotency
from projections import task_queries as tq
from services.api.params import Caller, Ctx, Cursor, IdemKey, Limit, MinPosition
from services.api.routes import (
    DEPENDENCIES,
    accepted,
    run,
    scope_of,
    visible,
    visible_project,
)

AgentSlug = Annotated[str, PathParameter(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
TaskStatusQ = Literal["open", "claimed", "completed", "verified"]
PriorityQ = Literal["p1", "p2", "p3", "p4"]
#: Findings considered per call when none are named (grouping needs more than one per packet).
CANDIDATES = 5000


class AgentController(Controller):
    path = "/v1/orgs"
    tags = ["agents"]
    dependencies = DEPENDENCIES

    @post(
        "/{org:str}/agents",
        operation_id="registerAgent",
        summary="Register a coding agent; its API key is in this answer only",
    )
    async def register(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromPath[str],
        data: JSONBody[RegisterAgent],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "registerAgent", org, data)
        return accepted(await run(ctx.pearl.register_agent, principal, org, data, idem))

    @get("/{org:str}/agents", operation_id="listAgents")
    async def agents(
        self, ctx: Ctx, principal: Caller, org: FromPath[str], min_position: MinPosition = None
    ) -> dict[str, Any]:
        authorize(principal, Action.AGENT_READ, org)
        await ctx.wait_for(min_position)
        return {"items": await tq.agents(ctx.pool, org, scope_of(principal))}

    @get("/{org:str}/agents/{slug:str}", operation_id="getAgent")
    async def agent(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromPath[str],
        slug: AgentSlug,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        authorize(principal, Action.AGENT_READ, org)
        await ctx.wait_for(min_position)
        row = await tq.agent(ctx.pool, org, slug, scope_of(principal))
        return visible(row, f"agent {slug!r}", principal, Action.AGENT_READ)

    @put("/{org:str}/agents/{slug:str}/autonomy", operation_id="setAgentAutonomy")
    async def autonomy(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromPath[str],
        slug: AgentSlug,
        data: JSONBody[SetAutonomy],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "setAgentAutonomy", org, slug, data)
        return accepted(await run(ctx.pearl.set_autonomy, principal, org, slug, data, idem), 200)

    @post(
        "/{org:str}/agents/{slug:str}/pause",
        operation_id="pauseAgent",
        status_code=200,
        summary="Kill switch: refuse the agent everything from now on and release its leases",
    )
    async def pause(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromPath[str],
        slug: AgentSlug,
        data: JSONBody[PauseAgent],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        authorize(principal, Action.AGENT_MANAGE, org)
        idem = command_idempotency(idempotency_key, "pauseAgent", org, slug, data)
        held = [UUID(i) for i in await tq.held_by(ctx.pool, org, slug)]
        result = await run(ctx.pearl.pause_agent, principal, org, slug, data, held, idem)
        ctx.forget_principals()
        return accepted(result, 200)

    @post("/{org:str}/agents/{slug:str}/resume", operation_id="resumeAgent", status_code=200)
    async def resume(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromPath[str],
        slug: AgentSlug,
        data: JSONBody[ResumeAgent],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "resumeAgent", org, slug, data)
        result = await run(ctx.pearl.resume_agent, principal, org, slug, data, idem)
        ctx.forget_principals()
        return accepted(result, 200)

    @post(
        "/{org:str}/agents/{slug:str}/keys",
        operation_id="issueAgentKey",
        summary="Another credential for the agent (rotate: issue, switch, revoke the old key)",
    )
    async def issue_key(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromPath[str],
        slug: AgentSlug,
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "issueAgentKey", org, slug)
        return accepted(await run(ctx.pearl.issue_agent_key, principal, org, slug, idem))


class TaskController(Controller):
    path = "/v1/projects"
    tags = ["tasks"]
    dependencies = DEPENDENCIES

    @post(
        "/{project_id:uuid}/tasks",
        operation_id="createTasks",
        summary="Cut remediation task packets from open findings",
    )
    async def create(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        data: JSONBody[CreateTasks],
        idempotency_key: IdemKey = None,
        min_position: MinPosition = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "createTasks", project_id, data)
        candidates: list[UUID] = []
        if not data.finding_ids:
            await ctx.wait_for(min_position)
            ids = await tq.untasked_findings(
                ctx.pool, str(project_id), scope_of(principal), list(data.severities), CANDIDATES
            )
            candidates = [UUID(i) for i in ids]
        result = await run(ctx.pearl.create_tasks, principal, project_id, data, candidates, idem)
        return accepted(result)

    @get("/{project_id:uuid}/tasks", operation_id="listTasks")
    async def tasks(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        status: FromQuery[TaskStatusQ | None] = None,
        holder: FromQuery[str | None] = None,
        priority: FromQuery[PriorityQ | None] = None,
        cursor: Cursor = None,
        limit: Limit = 100,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        await visible_project(ctx, principal, project_id, Action.TASK_READ)
        page = await tq.tasks(
            ctx.pool,
            str(project_id),
            scope_of(principal),
            status=status,
            holder=holder,
            priority=priority,
            after=cursor,
            limit=limit,
        )
        return {"items": page.items, "next_cursor": page.next_cursor}

    @get("/{project_id:uuid}/tasks/{task_id:uuid}", operation_id="getTask")
    async def task(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        task_id: FromPath[UUID],
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        row = await tq.task(ctx.pool, str(task_id), scope_of(principal))
        if row is not None and str(row["project_id"]) != str(project_id):
            row = None
        return visible(row, f"task {task_id}", principal, Action.TASK_READ)

    @post(
        "/{project_id:uuid}/tasks/{task_id:uuid}/claim", operation_id="claimTask", status_code=200
    )
    async def claim(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        task_id: FromPath[UUID],
        data: JSONBody[ClaimTask | None] = None,
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        cmd = data or ClaimTask()
        idem = command_idempotency(idempotency_key, "claimTask", task_id, cmd)
        result = await run(ctx.pearl.claim_task, principal, task_id, cmd, idem, None, project_id)
        return accepted(result, 200)

    @post(
        "/{project_id:uuid}/tasks/{task_id:uuid}/heartbeat",
        operation_id="heartbeatTask",
        status_code=200,
    )
    async def heartbeat(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        task_id: FromPath[UUID],
        data: JSONBody[TaskHeartbeat | None] = None,
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        cmd = data or TaskHeartbeat()
        idem = command_idempotency(idempotency_key, "heartbeatTask", task_id, cmd)
        heartbeat = partial(ctx.pearl.heartbeat_task, idem=idem)
        result = await run(heartbeat, principal, task_id, cmd, None, project_id)
        return accepted(result, 200)

    @post(
        "/{project_id:uuid}/tasks/{task_id:uuid}/complete",
        operation_id="completeTask",
        status_code=200,
    )
    async def complete(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        task_id: FromPath[UUID],
        data: JSONBody[CompleteTask],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "completeTask", task_id, data)
        result = await run(
            ctx.pearl.complete_task, principal, task_id, data, idem, None, project_id
        )
        return accepted(result, 200)

    @post(
        "/{project_id:uuid}/tasks/{task_id:uuid}/release",
        operation_id="releaseTask",
        status_code=200,
        summary="Give a claimed packet back: abandoned, or failed (`failed: true`)",
    )
    async def release(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        task_id: FromPath[UUID],
        data: JSONBody[ReleaseTask],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "releaseTask", task_id, data)
        release = partial(ctx.pearl.release_task, idem=idem)
        result = await run(release, principal, task_id, data, None, project_id)
        return accepted(result, 200)
