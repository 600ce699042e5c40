"""HTTP controllers: parse input, call one Application method or query, shape the answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from contracts.commands import (
    CreateOrg,
    CreateProject,
    IssueApiKey,
    RecordFinding,
    TriageFinding,
)
from domain.authz import Action, Principal, authorize
from domain.errors import InvalidInput, NotFound
from domain.finding import Finding
from domain.kernel import CommandResult, command_idempotency
from domain.wire import to_envelope
from projections import queries
from services.api.context import ApiContext
from services.api.params import Caller, Ctx, Cursor, IdemKey, Limit, MinPosition
from services.reports import ScanUpload, submit_upload

#: The largest store position (PostgreSQL bigint).
MAX_POSITION = 2**63 - 1
CommitQ = Annotated[
    str | None,
    QueryParameter(
        required=False,
        pattern=r"^[0-9a-f]{7,64}$",
        description="The git commit the report scanned (gates require scans of a commit)",
    ),
]
SeverityQ = Literal["critical", "high", "medium", "low", "info"]
StatusQ = Literal["open", "fixed", "reopened", "false_positive", "not_affected", "accepted_risk"]


async def provide_ctx(state: State) -> ApiContext:
    ctx: ApiContext = state.ctx
    return ctx


async def provide_principal(request: Request[Any, Any, Any], ctx: Ctx) -> Principal:
    return await ctx.authenticate(request)


DEPENDENCIES = {"ctx": Provide(provide_ctx), "principal": Provide(provide_principal)}


async def event_history(ctx: ApiContext, aggregate_id: UUID) -> list[dict[str, Any]]:
    """An aggregate's events as the wire shows them (type, version, time, actor, data)."""
    events = await asyncio.to_thread(list, ctx.pearl.events.get(aggregate_id))
    history = []
    for event in events:
        env = to_envelope(event, 0)
        history.append(
            {
                "type": env.type,
                "version": env.aggregateversion,
                "time": env.time,
                "actor": env.actor,
                "data": env.data,
            }
        )
    return history


async def as_of_position(ctx: ApiContext, org: str, as_of: str) -> int:
    """An `as_of` query value (position or ISO time) as a store position."""
    if as_of.isascii() and as_of.isdigit():  # str.isdigit() also takes "²" and other scripts
        return min(int(as_of), MAX_POSITION)
    try:
        when = datetime.fromisoformat(as_of)
    except ValueError:
        raise InvalidInput("as_of must be an event position or an ISO 8601 time") from None
    if when.tzinfo is None:
        raise InvalidInput("as_of needs a time zone (e.g. 2026-11-25T12:00:00Z)")
    return await queries.position_at(ctx.pool, org, when)


def finding_state(f: Finding) -> dict[str, Any]:
    """A finding aggregate in the shape of the findings read model."""
    return {
        "id": str(f.id),
        "org": f.org,
        "project_id": f.project_id,
        "fingerprint": f.fingerprint,
        "tool": f.tool,
        "sources": list(f.sources),
        "rule_id": f.rule_id,
        "title": f.title,
        "severity": f.severity,
        "status": f.status,
        "path": f.details.get("path"),
        "line": f.details.get("line"),
        "details": f.details,
        "first_seen": f.first_seen,
        "last_seen": f.last_seen,
        "scan_count": f.scan_count,
        "sla_due": f.sla_due,
        "justification": f.justification,
        "version": f.version,
    }


def accepted(result: CommandResult, status: int = 201) -> Response[dict[str, Any]]:
    headers = {"Pearl-Position": str(result.position)}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(result.body(), status_code=status, headers=headers)


async def run(fn: Callable[..., CommandResult], *args: Any) -> CommandResult:
    return await asyncio.to_thread(fn, *args)


def scope_of(principal: Principal) -> str:
    """The org a principal's reads are confined to (row-level security), `*` for platform admins."""
    return queries.ALL_ORGS if principal.is_platform_admin else principal.org


def visible(
    row: dict[str, Any] | None, what: str, principal: Principal, action: Action
) -> dict[str, Any]:
    """A read-model row the principal may act on; a missing (or hidden) row is not found."""
    if row is None:
        raise NotFound(f"{what} not found")
    authorize(principal, action, row["org"], resource=what)
    return row


async def visible_project(
    ctx: ApiContext, principal: Principal, project_id: UUID, action: Action
) -> dict[str, Any]:
    row = await queries.project(ctx.pool, str(project_id), scope_of(principal))
    return visible(row, f"project {project_id}", principal, action)


class OrgController(Controller):
    path = "/v1/orgs"
    tags = ["orgs"]
    dependencies = DEPENDENCIES

    @post("/", operation_id="createOrg", summary="Create an org (platform administrators)")
    async def create_org(
        self,
        ctx: Ctx,
        principal: Caller,
        data: JSONBody[CreateOrg],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "createOrg", data)
        return accepted(await run(ctx.pearl.create_org, principal, data, idem))

    @get("/{org:str}", operation_id="getOrg")
    async def get_org(
        self, ctx: Ctx, principal: Caller, org: FromPath[str], min_position: MinPosition = None
    ) -> dict[str, Any]:
        authorize(principal, Action.ORG_READ, org)
        await ctx.wait_for(min_position)
        row = await queries.org(ctx.pool, org)
        if row is None:
            raise NotFound(f"org {org!r} not found")
        return row

    @post("/{org:str}/projects", operation_id="createProject")
    async def create_project(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromPath[str],
        data: JSONBody[CreateProject],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "createProject", org, data)
        return accepted(await run(ctx.pearl.create_project, principal, org, data, idem))

    @get("/{org:str}/projects", operation_id="listProjects")
    async def list_projects(
        self, ctx: Ctx, principal: Caller, org: FromPath[str], min_position: MinPosition = None
    ) -> dict[str, Any]:
        authorize(principal, Action.PROJECT_READ, org)
        await ctx.wait_for(min_position)
        return {"items": await queries.projects(ctx.pool, org)}

    @post(
        "/{org:str}/keys",
        operation_id="issueApiKey",
        summary="Issue an API key; its token is shown in this answer only",
    )
    async def issue_key(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromPath[str],
        data: JSONBody[IssueApiKey],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "issueApiKey", org, data)
        return accepted(await run(ctx.pearl.issue_api_key, principal, org, data, idem))

    @get(
        "/{org:str}/keys",
        operation_id="listApiKeys",
        summary="The org's API keys: names, roles, expiry, revocation, last use (no secrets)",
    )
    async def list_keys(
        self, ctx: Ctx, principal: Caller, org: FromPath[str], min_position: MinPosition = None
    ) -> dict[str, Any]:
        authorize(principal, Action.APIKEY_ISSUE, org)
        await ctx.wait_for(min_position)
        return {"items": await queries.api_keys(ctx.pool, org)}

    @delete("/{org:str}/keys/{key_id:str}", operation_id="revokeApiKey", status_code=200)
    async def revoke_key(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromPath[str],
        key_id: FromPath[str],
        reason: FromQuery[str] = "revoked",
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "revokeApiKey", org, key_id, reason)
        revoke = ctx.pearl.revoke_api_key
        return accepted(await run(revoke, principal, org, key_id, reason, idem), 200)


class ProjectController(Controller):
    path = "/v1/projects"
    tags = ["projects", "findings"]
    dependencies = DEPENDENCIES

    @get("/{project_id:uuid}", operation_id="getProject")
    async def get_project(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        return await visible_project(ctx, principal, project_id, Action.PROJECT_READ)

    @post("/{project_id:uuid}/findings", operation_id="recordFinding")
    async def record_finding(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        data: JSONBody[RecordFinding],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "recordFinding", project_id, data)
        return accepted(await run(ctx.pearl.record_finding, principal, project_id, data, idem))

    @get("/{project_id:uuid}/findings", operation_id="listFindings")
    async def list_findings(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        status: FromQuery[StatusQ | None] = None,
        severity: FromQuery[SeverityQ | None] = None,
        tool: FromQuery[str | None] = None,
        path_prefix: FromQuery[str | None] = None,
        cwe: FromQuery[str | None] = None,
        overdue: FromQuery[bool] = False,
        cursor: FromQuery[UUID | None] = None,
        limit: Limit = 100,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        project = await visible_project(ctx, principal, project_id, Action.FINDING_READ)
        page = await queries.findings(
            ctx.pool,
            project["org"],
            str(project_id),
            status=status,
            severity=severity,
            tool=tool,
            path_prefix=path_prefix,
            cwe=cwe,
            overdue_at=ctx.pearl.now() if overdue else None,
            after=str(cursor) if cursor else None,
            limit=limit,
        )
        return {"items": page.items, "next_cursor": page.next_cursor}

    @get(
        "/{project_id:uuid}/state",
        operation_id="getProjectStateAsOf",
        summary="Time travel: the project and its findings as they were at a time or position",
        description="`as_of` is an event position (an integer) or an ISO 8601 time. The state "
        "is recomputed from the event store, not read from the read models.",
    )
    async def state_as_of(
        self, ctx: Ctx, principal: Caller, project_id: FromPath[UUID], as_of: FromQuery[str]
    ) -> dict[str, Any]:
        project = await visible_project(ctx, principal, project_id, Action.FINDING_READ)
        position = await as_of_position(ctx, project["org"], as_of)
        ids = await queries.aggregate_ids(ctx.pool, project["org"], str(project_id), "finding")
        then, findings = await asyncio.to_thread(
            ctx.pearl.project_as_of, principal, project_id, [UUID(i) for i in ids], position
        )
        if then is None:
            raise NotFound(f"project {project_id} did not exist at position {position}")
        items = sorted((finding_state(f) for f in findings), key=lambda f: str(f["id"]))
        summary: dict[str, int] = {}
        for item in items:
            summary[item["status"]] = summary.get(item["status"], 0) + 1
        return {
            "as_of_position": position,
            "project": {
                "id": str(then.id),
                "org": then.org,
                "slug": then.slug,
                "name": then.name,
                "environments": then.environments,
            },
            "findings": items,
            "summary": summary,
        }

    @post(
        "/{project_id:uuid}/scans",
        operation_id="submitScan",
        status_code=202,
        request_max_body_size=None,
        summary="Submit a raw scanner report (SARIF, Semgrep, Bandit, Trivy, Grype, Checkov, …)",
        description="The body is the report itself; its format is detected unless `tool` is "
        "given. A `full` scan fixes findings of the same (tool, target, branch) scope that it "
        "no longer reports. The same bytes for the same scope again change nothing.",
    )
    async def submit_scan(
        self,
        ctx: Ctx,
        principal: Caller,
        request: Request[Any, Any, Any],
        project_id: FromPath[UUID],
        tool: FromQuery[str | None] = None,
        target: FromQuery[str] = "default",
        branch: FromQuery[str] = "main",
        full: FromQuery[bool] = True,
        commit: CommitQ = None,
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        upload = ScanUpload(project_id, tool, target, branch, full, commit, idempotency_key)
        result = await submit_upload(
            ctx.pearl,
            ctx.reports,
            principal,
            upload,
            request.stream(),
            ctx.settings.max_report_bytes,
        )
        return accepted(result, 202)

    @get("/{project_id:uuid}/scans", operation_id="listScans")
    async def list_scans(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        cursor: Cursor = None,
        limit: Limit = 100,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        await visible_project(ctx, principal, project_id, Action.FINDING_READ)
        page = await queries.scans(
            ctx.pool, str(project_id), scope_of(principal), after=cursor, limit=limit
        )
        return {"items": page.items, "next_cursor": page.next_cursor}


class FindingController(Controller):
    path = "/v1/findings"
    tags = ["findings"]
    dependencies = DEPENDENCIES

    @get(
        "/{finding_id:uuid}",
        operation_id="getFinding",
        summary="A finding's current state and its full event history",
    )
    async def get_finding(
        self,
        ctx: Ctx,
        principal: Caller,
        finding_id: FromPath[UUID],
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        row = visible(
            await queries.finding(ctx.pool, str(finding_id), scope_of(principal)),
            f"finding {finding_id}",
            principal,
            Action.FINDING_READ,
        )
        return {**row, "history": await event_history(ctx, finding_id)}

    @post("/{finding_id:uuid}/triage", operation_id="triageFinding", status_code=200)
    async def triage(
        self,
        ctx: Ctx,
        principal: Caller,
        finding_id: FromPath[UUID],
        data: JSONBody[TriageFinding],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "triageFinding", finding_id, data)
        result = await run(
            ctx.pearl.triage_finding, principal, finding_id, data.status, data.justification, idem
        )
        return accepted(result, 200)


class ScanController(Controller):
    path = "/v1/scans"
    tags = ["scans"]
    dependencies = DEPENDENCIES

    @get("/{scan_id:uuid}", operation_id="getScan")
    async def get_scan(
        self, ctx: Ctx, principal: Caller, scan_id: FromPath[UUID], min_position: MinPosition = None
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        row = visible(
            await queries.scan(ctx.pool, str(scan_id), scope_of(principal)),
            f"scan {scan_id}",
            principal,
            Action.FINDING_READ,
        )
        return row


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]
    dependencies = DEPENDENCIES

    @get(
        "/",
        operation_id="listAudit",
        summary="The hash-chained audit trail of one org, filtered, cursor-paginated",
    )
    async def list_audit(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromQuery[str | None] = None,
        project: FromQuery[UUID | None] = None,
        aggregate_id: FromQuery[UUID | None] = None,
        actor: FromQuery[str | None] = None,
        type: FromQuery[str | None] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        cursor: Cursor = None,
        limit: Limit = 100,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        scope = org or principal.org
        if project is not None:
            row = await visible_project(ctx, principal, project, Action.AUDIT_READ)
            scope = row["org"]
        authorize(principal, Action.AUDIT_READ, scope)
        page = await queries.audit(
            ctx.pool,
            scope,
            project_id=str(project) if project else None,
            aggregate_id=str(aggregate_id) if aggregate_id else None,
            actor=actor,
            type_=type,
            since=since,
            until=until,
            after=cursor,
            limit=limit,
        )
        return {"items": page.items, "next_cursor": page.next_cursor}


@get("/v1/whoami", operation_id="whoami", dependencies=DEPENDENCIES, tags=["auth"])
async def whoami(principal: Caller) -> dict[str, Any]:
    return {
        "id": principal.id,
        "org": principal.org,
        "roles": sorted(principal.roles),
        "kind": principal.kind,
        "name": principal.name,
    }


ROUTES: list[Any] = [
    OrgController,
    ProjectController,
    FindingController,
    ScanController,
    AuditController,
    whoami,
]
