"""HTTP controllers for scan targets, scan jobs and the scanners installed on this host."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, Response, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from contracts.targets import RegisterScanTarget, RequestScanJob, UpdateScanTarget
from domain.authz import Action
from domain.errors import InvalidInput
from domain.kernel import command_idempotency
from projections import target_queries
from services.api.params import Caller, Ctx, Cursor, IdemKey, Limit, MinPosition
from services.api.routes import (
    DEPENDENCIES,
    accepted,
    event_history,
    run,
    scope_of,
    visible,
    visible_project,
)
from services.scanners_local import installed

JobStatusQ = Literal["queued", "running", "retry_wait", "succeeded", "failed", "cancelled"]
Reason = Annotated[str, QueryParameter(min_length=1, max_length=500)]


def _same_id(body_id: str | None, path_id: UUID, what: str) -> None:
    if body_id is not None and body_id.replace("-", "").lower() != path_id.hex:
        raise InvalidInput(f"data.{what} does not match the {what} in the path")


@get(
    "/v1/scanners",
    operation_id="listScanners",
    dependencies=DEPENDENCIES,
    tags=["scans"],
    summary="The scanners installed on this host, with their versions and target kinds",
)
async def list_scanners(principal: Caller) -> dict[str, Any]:
    found = await asyncio.to_thread(installed)
    return {"items": [info.public() for info in found.values()]}


class ProjectTargetController(Controller):
    path = "/v1/projects"
    tags = ["scans"]
    dependencies = DEPENDENCIES

    @post(
        "/{project_id:uuid}/targets",
        operation_id="registerScanTarget",
        summary="Register a scan target: what to scan, with which scanners, how often",
    )
    async def register_target(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        data: JSONBody[RegisterScanTarget],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        _same_id(data.project_id, project_id, "project_id")
        idem = command_idempotency(idempotency_key, "registerScanTarget", project_id, data)
        app = ctx.pearl
        return accepted(await run(app.register_target, principal, project_id, data, idem))

    @get("/{project_id:uuid}/targets", operation_id="listScanTargets")
    async def list_targets(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        include_removed: FromQuery[bool] = False,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        await visible_project(ctx, principal, project_id, Action.FINDING_READ)
        items = await target_queries.targets(
            ctx.pool, str(project_id), scope_of(principal), include_removed=include_removed
        )
        return {"items": items}

    @get("/{project_id:uuid}/jobs", operation_id="listScanJobs")
    async def list_jobs(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        status: FromQuery[JobStatusQ | None] = None,
        target_id: FromQuery[UUID | None] = None,
        cursor: Cursor = None,
        limit: Limit = 100,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        await visible_project(ctx, principal, project_id, Action.FINDING_READ)
        page = await target_queries.jobs(
            ctx.pool,
            str(project_id),
            scope_of(principal),
            target_id=str(target_id) if target_id else None,
            status=status,
            after=cursor,
            limit=limit,
        )
        return {"items": page.items, "next_cursor": page.next_cursor}


class TargetController(Controller):
    path = "/v1/targets"
    tags = ["scans"]
    dependencies = DEPENDENCIES

    @get("/{target_id:uuid}", operation_id="getScanTarget")
    async def get_target(
        self,
        ctx: Ctx,
        principal: Caller,
        target_id: FromPath[UUID],
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        row = visible(
            await target_queries.target(ctx.pool, str(target_id), scope_of(principal)),
            f"scan target {target_id}",
            principal,
            Action.FINDING_READ,
        )
        return row

    @put(
        "/{target_id:uuid}",
        operation_id="updateScanTarget",
        summary="Replace a scan target's definition",
    )
    async def update_target(
        self,
        ctx: Ctx,
        principal: Caller,
        target_id: FromPath[UUID],
        data: JSONBody[UpdateScanTarget],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "updateScanTarget", target_id, data)
        app = ctx.pearl
        return accepted(await run(app.update_target, principal, target_id, data, idem), 200)

    @delete(
        "/{target_id:uuid}",
        operation_id="removeScanTarget",
        status_code=200,
        summary="Remove a scan target; its jobs not started yet are cancelled",
    )
    async def remove_target(
        self,
        ctx: Ctx,
        principal: Caller,
        target_id: FromPath[UUID],
        reason: Reason = "removed",
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "removeScanTarget", target_id, reason)
        app = ctx.pearl
        return accepted(await run(app.remove_target, principal, target_id, reason, idem), 200)

    @post(
        "/{target_id:uuid}/jobs",
        operation_id="requestScanJob",
        status_code=202,
        summary="Run the target's scanners now (one job per scanner; `scanner` picks one)",
    )
    async def request_job(
        self,
        ctx: Ctx,
        principal: Caller,
        target_id: FromPath[UUID],
        data: JSONBody[RequestScanJob | None] = None,
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        body = data or RequestScanJob()
        _same_id(body.target_id, target_id, "target_id")
        idem = command_idempotency(idempotency_key, "requestScanJob", target_id, body)
        app = ctx.pearl
        result = await run(app.request_scan_job, principal, target_id, body.scanner, idem)
        return accepted(result, 202)


class JobController(Controller):
    path = "/v1/jobs"
    tags = ["scans"]
    dependencies = DEPENDENCIES

    @get(
        "/{job_id:uuid}",
        operation_id="getScanJob",
        summary="A scan job's state and its events (requested, attempts, failures, outcome)",
    )
    async def get_job(
        self,
        ctx: Ctx,
        principal: Caller,
        job_id: FromPath[UUID],
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        row = visible(
            await target_queries.job(ctx.pool, str(job_id), scope_of(principal)),
            f"scan job {job_id}",
            principal,
            Action.FINDING_READ,
        )
        return {**row, "history": await event_history(ctx, job_id)}


ROUTES: list[Any] = [list_scanners, ProjectTargetController, TargetController, JobController]
