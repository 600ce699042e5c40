"""HTTP controllers for governance: profiles, policies, versions, test results, promotions
and their gate, environments and releases, approvals, exceptions, decision replay."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter, QueryParameter

from contracts.governance import (
    ClosePromotion,
    CommentApproval,
    DecideApproval,
    DecideException,
    RegisterVersion,
    RequestException,
    RequestPromotion,
    RevokeException,
    Rollback,
    SetPolicy,
    SetProfile,
    SubmitTestResults,
)
from domain.authz import Action, Principal, authorize
from domain.errors import InvalidInput, NotFound
from domain.gate_policy import GatePolicy
from domain.kernel import command_idempotency
from domain.policy import diff_policies
from projections import governance_queries as gq
from services.api.context import ApiContext
from services.api.params import Caller, Ctx, Cursor, IdemKey, Limit, MinPosition
from services.api.routes import (
    DEPENDENCIES,
    accepted,
    as_of_position,
    event_history,
    run,
    scope_of,
    visible,
    visible_project,
)
from services.gate import with_gate

EnvName = Annotated[str, PathParameter(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
PromotionStatusQ = Literal[
    "pending", "passed", "failed", "awaiting_approval", "promoted", "rejected"
]
ApprovalStatusQ = Literal["pending", "approved", "rejected", "expired", "voided"]
ExceptionStatusQ = Literal["requested", "active", "rejected", "revoked", "expired"]
AsOf = Annotated[
    str | None,
    QueryParameter(
        required=False,
        description="Time travel: an event position or ISO 8601 time; the state is recomputed "
        "from the event store",
    ),
]
DiffFrom = Annotated[int, QueryParameter(name="from", ge=0)]
DiffTo = Annotated[int, QueryParameter(name="to", ge=1)]


def policy_versions(policy: GatePolicy) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in entry.items() if k != "document"} | {"id": str(policy.id)}
        for entry in policy.versions
    ]


def _diff(policy: GatePolicy, old: int, new: int) -> dict[str, Any]:
    before = policy.at_version(old)["document"] if old else None
    after = policy.at_version(new)["document"]
    return {"from": old, "to": new, "changes": diff_policies(before, after)}


class OrgPolicyController(Controller):
    path = "/v1/orgs"
    tags = ["policies"]
    dependencies = DEPENDENCIES

    @put(
        "/{org:str}/policies/{environment:str}",
        operation_id="setBaselinePolicy",
        status_code=200,
        summary="A new version of the org baseline policy of an environment",
    )
    async def set_baseline(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromPath[str],
        environment: EnvName,
        data: JSONBody[SetPolicy],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "setPolicy", org, environment, data)
        result = await run(ctx.pearl.set_policy, principal, org, None, environment, data, idem)
        return accepted(result, 200)

    @get("/{org:str}/policies/{environment:str}/versions", operation_id="listBaselineVersions")
    async def baseline_versions(
        self, ctx: Ctx, principal: Caller, org: FromPath[str], environment: EnvName
    ) -> dict[str, Any]:
        policy = await asyncio.to_thread(ctx.pearl.get_policy, principal, org, None, environment)
        return {"items": policy_versions(policy)}

    @get(
        "/{org:str}/policies/{environment:str}/versions/{version:int}",
        operation_id="getBaselineVersion",
    )
    async def baseline_version(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromPath[str],
        environment: EnvName,
        version: FromPath[int],
    ) -> dict[str, Any]:
        policy = await asyncio.to_thread(ctx.pearl.get_policy, principal, org, None, environment)
        return policy.at_version(version)

    @get("/{org:str}/policies/{environment:str}/diff", operation_id="diffBaselineVersions")
    async def baseline_diff(
        self,
        ctx: Ctx,
        principal: Caller,
        org: FromPath[str],
        environment: EnvName,
        from_version: DiffFrom,
        to_version: DiffTo,
    ) -> dict[str, Any]:
        policy = await asyncio.to_thread(ctx.pearl.get_policy, principal, org, None, environment)
        return _diff(policy, from_version, to_version)


class ProjectGovernanceController(Controller):
    path = "/v1/projects"
    tags = ["governance"]
    dependencies = DEPENDENCIES

    @put("/{project_id:uuid}/profile", operation_id="setProjectProfile", status_code=200)
    async def set_profile(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        data: JSONBody[SetProfile],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "setProfile", project_id, data)
        return accepted(await run(ctx.pearl.set_profile, principal, project_id, data, idem), 200)

    @put(
        "/{project_id:uuid}/policies/{environment:str}",
        operation_id="setProjectPolicy",
        status_code=200,
        summary="A new version of the project's policy of an environment (may only tighten "
        "the org baseline)",
    )
    async def set_policy(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        environment: EnvName,
        data: JSONBody[SetPolicy],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        project = await asyncio.to_thread(ctx.pearl.get_project, principal, project_id)
        idem = command_idempotency(idempotency_key, "setPolicy", project_id, environment, data)
        result = await run(
            ctx.pearl.set_policy, principal, project.org, project_id, environment, data, idem
        )
        return accepted(result, 200)

    @get(
        "/{project_id:uuid}/policies/{environment:str}",
        operation_id="getEffectivePolicy",
        summary="The rules in force for an environment: baseline and project, merged",
    )
    async def effective(
        self, ctx: Ctx, principal: Caller, project_id: FromPath[UUID], environment: EnvName
    ) -> dict[str, Any]:
        policy = await asyncio.to_thread(
            ctx.pearl.policy_in_force, principal, project_id, environment
        )
        return {
            "environment": environment,
            "baseline": policy.entries["baseline"],
            "project": policy.entries["project"],
            "rules": [{"source": s, **msgspec.to_builtins(r)} for s, r in policy.rules],
        }

    @get(
        "/{project_id:uuid}/policies/{environment:str}/versions",
        operation_id="listProjectPolicyVersions",
    )
    async def versions(
        self, ctx: Ctx, principal: Caller, project_id: FromPath[UUID], environment: EnvName
    ) -> dict[str, Any]:
        policy = await self._policy(ctx, principal, project_id, environment)
        return {"items": policy_versions(policy)}

    @get(
        "/{project_id:uuid}/policies/{environment:str}/versions/{version:int}",
        operation_id="getProjectPolicyVersion",
    )
    async def version(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        environment: EnvName,
        version: FromPath[int],
    ) -> dict[str, Any]:
        policy = await self._policy(ctx, principal, project_id, environment)
        return policy.at_version(version)

    @get(
        "/{project_id:uuid}/policies/{environment:str}/diff",
        operation_id="diffProjectPolicyVersions",
    )
    async def diff(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        environment: EnvName,
        from_version: DiffFrom,
        to_version: DiffTo,
    ) -> dict[str, Any]:
        policy = await self._policy(ctx, principal, project_id, environment)
        return _diff(policy, from_version, to_version)

    async def _policy(
        self, ctx: ApiContext, principal: Principal, project_id: UUID, environment: str
    ) -> GatePolicy:
        project = await asyncio.to_thread(ctx.pearl.get_project, principal, project_id)
        return await asyncio.to_thread(
            ctx.pearl.get_policy, principal, project.org, project_id, environment
        )

    @post("/{project_id:uuid}/versions", operation_id="registerVersion")
    async def register_version(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        data: JSONBody[RegisterVersion],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "registerVersion", project_id, data)
        return accepted(await run(ctx.pearl.register_version, principal, project_id, data, idem))

    @get("/{project_id:uuid}/versions", operation_id="listVersions")
    async def list_versions(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        await visible_project(ctx, principal, project_id, Action.PROJECT_READ)
        return {"items": await gq.versions(ctx.pool, str(project_id), scope_of(principal))}

    @post("/{project_id:uuid}/test-results", operation_id="submitTestResults")
    async def submit_tests(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        data: JSONBody[SubmitTestResults],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "submitTestResults", project_id, data)
        result = await run(ctx.pearl.submit_test_results, principal, project_id, data, idem)
        return accepted(result)

    @get("/{project_id:uuid}/test-results", operation_id="listTestResults")
    async def list_tests(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        commit: FromQuery[str | None] = None,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        await visible_project(ctx, principal, project_id, Action.PROJECT_READ)
        items = await gq.test_runs(ctx.pool, str(project_id), scope_of(principal), commit=commit)
        return {"items": items}

    @post(
        "/{project_id:uuid}/promotions",
        operation_id="requestPromotion",
        summary="Request promoting a registered version into the next environment; the gate "
        "is evaluated at once (`gate` in the answer) and again whenever its inputs change",
    )
    async def request_promotion(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        data: JSONBody[RequestPromotion],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "requestPromotion", project_id, data)
        return accepted(await ctx.gate.request_promotion(principal, project_id, data, idem))

    @get("/{project_id:uuid}/promotions", operation_id="listPromotions")
    async def list_promotions(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        status: FromQuery[PromotionStatusQ | None] = None,
        environment: FromQuery[str | None] = None,
        cursor: Cursor = None,
        limit: Limit = 100,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        await visible_project(ctx, principal, project_id, Action.PROJECT_READ)
        page = await gq.promotions(
            ctx.pool,
            str(project_id),
            scope_of(principal),
            status=status,
            environment=environment,
            after=cursor,
            limit=limit,
        )
        return {"items": page.items, "next_cursor": page.next_cursor}

    @get(
        "/{project_id:uuid}/environments",
        operation_id="listEnvironments",
        summary="Each environment with the version live in it and any open promotion",
    )
    async def environments(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        project = await visible_project(ctx, principal, project_id, Action.PROJECT_READ)
        rows = {
            r["name"]: r
            for r in await gq.environments(ctx.pool, str(project_id), scope_of(principal))
        }
        items = [rows.get(name) or {"name": name} for name in project["environments"]]
        return {"items": items}

    @get(
        "/{project_id:uuid}/releases",
        operation_id="listReleases",
        summary="The promotion history: every promotion and rollback, per environment",
    )
    async def releases(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        environment: FromQuery[str | None] = None,
        cursor: Cursor = None,
        limit: Limit = 100,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        await visible_project(ctx, principal, project_id, Action.PROJECT_READ)
        page = await gq.releases(
            ctx.pool,
            str(project_id),
            scope_of(principal),
            environment=environment,
            after=cursor,
            limit=limit,
        )
        return {"items": page.items, "next_cursor": page.next_cursor}

    @post(
        "/{project_id:uuid}/environments/{environment:str}/rollback",
        operation_id="rollbackEnvironment",
        status_code=200,
        summary="Put the previous good version back; the current one counts as a failed release",
    )
    async def rollback(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        environment: EnvName,
        data: JSONBody[Rollback],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "rollback", project_id, environment, data)
        result = await run(
            ctx.pearl.rollback, principal, project_id, environment, data.reason, idem
        )
        return accepted(result, 200)

    @get("/{project_id:uuid}/approvals", operation_id="listApprovals")
    async def approvals(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        status: FromQuery[ApprovalStatusQ | None] = None,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        await visible_project(ctx, principal, project_id, Action.PROJECT_READ)
        items = await gq.approvals(ctx.pool, str(project_id), scope_of(principal), status=status)
        return {"items": items}

    @post("/{project_id:uuid}/exceptions", operation_id="requestException")
    async def request_exception(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        data: JSONBody[RequestException],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "requestException", project_id, data)
        result = await run(ctx.pearl.request_exception, principal, project_id, data, idem)
        return accepted(result)

    @get("/{project_id:uuid}/exceptions", operation_id="listExceptions")
    async def exceptions(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        status: FromQuery[ExceptionStatusQ | None] = None,
        cursor: Cursor = None,
        limit: Limit = 100,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        await visible_project(ctx, principal, project_id, Action.FINDING_READ)
        page = await gq.exceptions(
            ctx.pool, str(project_id), scope_of(principal), status=status, after=cursor, limit=limit
        )
        return {"items": page.items, "next_cursor": page.next_cursor}


class PromotionController(Controller):
    path = "/v1/promotions"
    tags = ["governance"]
    dependencies = DEPENDENCIES

    @get(
        "/{promotion_id:uuid}",
        operation_id="getPromotion",
        summary="A promotion, its gate decisions and events (or its state as of a time)",
    )
    async def get_promotion(
        self,
        ctx: Ctx,
        principal: Caller,
        promotion_id: FromPath[UUID],
        as_of: AsOf = None,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        promotion = await asyncio.to_thread(ctx.pearl.get_promotion, principal, promotion_id)
        if as_of is not None:
            position = await as_of_position(ctx, promotion.org, as_of)
            then = await asyncio.to_thread(ctx.pearl.as_of, type(promotion), promotion_id, position)
            if then is None:
                raise NotFound(f"promotion {promotion_id} did not exist at position {position}")
            return {"as_of_position": position, **_promotion_state(then)}
        await ctx.wait_for(min_position)
        row = await gq.promotion(ctx.pool, str(promotion_id), scope_of(principal))
        if row is None:
            raise NotFound(f"promotion {promotion_id} not found")
        decisions = await gq.decisions(ctx.pool, str(promotion_id), scope_of(principal))
        return {**row, "decisions": decisions, "history": await event_history(ctx, promotion_id)}

    @get(
        "/{promotion_id:uuid}/explain",
        operation_id="explainPromotion",
        summary="Why the gate decided what it did: failed rules first, and what would pass them",
    )
    async def explain(
        self,
        ctx: Ctx,
        principal: Caller,
        promotion_id: FromPath[UUID],
        decision: FromQuery[UUID | None] = None,
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        return await ctx.gate.explanation(principal, promotion_id, decision)

    @post(
        "/{promotion_id:uuid}/evaluate",
        operation_id="evaluatePromotion",
        status_code=200,
        summary="Evaluate the gate again now (a new decision event)",
    )
    async def evaluate(
        self,
        ctx: Ctx,
        principal: Caller,
        promotion_id: FromPath[UUID],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "evaluatePromotion", promotion_id)
        return accepted(await ctx.gate.evaluate_now(principal, promotion_id, idem), 200)

    @post("/{promotion_id:uuid}/promote", operation_id="promote", status_code=200)
    async def promote(
        self,
        ctx: Ctx,
        principal: Caller,
        promotion_id: FromPath[UUID],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "promote", promotion_id)
        return accepted(await run(ctx.pearl.promote, principal, promotion_id, idem), 200)

    @post("/{promotion_id:uuid}/reject", operation_id="rejectPromotion", status_code=200)
    async def reject(
        self,
        ctx: Ctx,
        principal: Caller,
        promotion_id: FromPath[UUID],
        data: JSONBody[ClosePromotion],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "rejectPromotion", promotion_id, data)
        result = await run(ctx.pearl.reject_promotion, principal, promotion_id, data.reason, idem)
        return accepted(result, 200)

    @post(
        "/{promotion_id:uuid}/approval-requests",
        operation_id="requestApprovalAgain",
        summary="Ask for approval again after a request expired or was rejected",
    )
    async def request_approval(
        self,
        ctx: Ctx,
        principal: Caller,
        promotion_id: FromPath[UUID],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "requestApproval", promotion_id)
        return accepted(await run(ctx.pearl.request_approval, principal, promotion_id, idem))

    @get(
        "/{promotion_id:uuid}/decisions/{decision_id:uuid}/replay",
        operation_id="replayDecision",
        summary="Re-run a recorded gate decision from the event store as of its position",
    )
    async def replay(
        self, ctx: Ctx, principal: Caller, promotion_id: FromPath[UUID], decision_id: FromPath[UUID]
    ) -> dict[str, Any]:
        promotion = await asyncio.to_thread(ctx.pearl.get_promotion, principal, promotion_id)
        authorize(principal, Action.AUDIT_READ, promotion.org, resource=f"promotion {promotion_id}")
        return await ctx.gate.replay(promotion_id, str(decision_id), promotion.org)


def _same_id(path_id: UUID, body_id: str | None, field: str) -> None:
    """The body may repeat the path's id (bus bodies carry it) but never name another one."""
    if body_id is None:
        return
    try:
        same = UUID(body_id) == path_id
    except ValueError:
        same = False
    if not same:
        raise InvalidInput(f"{field} {body_id!r} in the body is not the one in the path")


def _promotion_state(p: Any) -> dict[str, Any]:
    return {
        "id": str(p.id),
        "org": p.org,
        "project_id": p.project_id,
        "release": p.release,
        "commit": p.commit,
        "version_digest": p.version_digest,
        "from_environment": p.from_environment,
        "to_environment": p.to_environment,
        "status": p.status,
        "requested_by": p.requested_by,
        "requested_at": p.requested_at,
        "evaluations": p.evaluations,
        "approval_requests": p.approval_requests,
        "closed_at": p.closed_at,
        "version_no": p.version,
    }


def _approval_state(r: Any) -> dict[str, Any]:
    return {
        "id": str(r.id),
        "org": r.org,
        "project_id": r.project_id,
        "promotion_id": r.promotion_id,
        "environment": r.environment,
        "release": r.release,
        "version_digest": r.version_digest,
        "required_count": r.required_count,
        "roles": r.roles,
        "status": r.status,
        "approvals": r.approvals,
        "decisions": r.decisions,
        "comments": r.comments,
        "requested_by": r.requested_by,
        "expires_at": r.expires_at,
    }


class ApprovalController(Controller):
    path = "/v1/approvals"
    tags = ["governance"]
    dependencies = DEPENDENCIES

    @get("/{request_id:uuid}", operation_id="getApproval")
    async def get_approval(
        self,
        ctx: Ctx,
        principal: Caller,
        request_id: FromPath[UUID],
        as_of: AsOf = None,
    ) -> dict[str, Any]:
        request = await asyncio.to_thread(ctx.pearl.get_approval, principal, request_id)
        if as_of is not None:
            position = await as_of_position(ctx, request.org, as_of)
            then = await asyncio.to_thread(ctx.pearl.as_of, type(request), request_id, position)
            if then is None:
                raise NotFound(f"approval request {request_id} did not exist at {position}")
            return {"as_of_position": position, **_approval_state(then)}
        return {**_approval_state(request), "history": await event_history(ctx, request_id)}

    @post(
        "/{request_id:uuid}/decisions",
        operation_id="decideApproval",
        status_code=200,
        summary="Approve or reject; the gate of the promotion is evaluated again",
    )
    async def decide(
        self,
        ctx: Ctx,
        principal: Caller,
        request_id: FromPath[UUID],
        data: JSONBody[DecideApproval],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        _same_id(request_id, data.request_id, "request_id")
        idem = command_idempotency(idempotency_key, "decideApproval", request_id, data)
        result = await run(ctx.pearl.decide_approval, principal, request_id, data, idem)
        promotion_id = UUID(result.ids["promotion_id"])
        gate = {} if result.replayed else await ctx.gate.evaluate_after(promotion_id, result)
        return accepted(with_gate(result, gate), 200)

    @post("/{request_id:uuid}/comments", operation_id="commentApproval")
    async def comment(
        self,
        ctx: Ctx,
        principal: Caller,
        request_id: FromPath[UUID],
        data: JSONBody[CommentApproval],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        _same_id(request_id, data.request_id, "request_id")
        idem = command_idempotency(idempotency_key, "commentApproval", request_id, data)
        return accepted(await run(ctx.pearl.comment_approval, principal, request_id, data, idem))


class ExceptionController(Controller):
    path = "/v1/exceptions"
    tags = ["governance"]
    dependencies = DEPENDENCIES

    @get("/{exception_id:uuid}", operation_id="getException")
    async def get_exception(
        self,
        ctx: Ctx,
        principal: Caller,
        exception_id: FromPath[UUID],
        min_position: MinPosition = None,
    ) -> dict[str, Any]:
        await ctx.wait_for(min_position)
        row = visible(
            await gq.exception(ctx.pool, str(exception_id), scope_of(principal)),
            f"exception {exception_id}",
            principal,
            Action.FINDING_READ,
        )
        return {**row, "history": await event_history(ctx, exception_id)}

    @post(
        "/{exception_id:uuid}/decision",
        operation_id="decideException",
        status_code=200,
        summary="Approve or reject a requested exception (never by its requester)",
    )
    async def decide(
        self,
        ctx: Ctx,
        principal: Caller,
        exception_id: FromPath[UUID],
        data: JSONBody[DecideException],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        _same_id(exception_id, data.exception_id, "exception_id")
        idem = command_idempotency(idempotency_key, "decideException", exception_id, data)
        result = await run(ctx.pearl.decide_exception, principal, exception_id, data, idem)
        return accepted(result, 200)

    @post("/{exception_id:uuid}/revoke", operation_id="revokeException", status_code=200)
    async def revoke(
        self,
        ctx: Ctx,
        principal: Caller,
        exception_id: FromPath[UUID],
        data: JSONBody[RevokeException],
        idempotency_key: IdemKey = None,
    ) -> Response[dict[str, Any]]:
        idem = command_idempotency(idempotency_key, "revokeException", exception_id, data)
        result = await run(ctx.pearl.revoke_exception, principal, exception_id, data.reason, idem)
        return accepted(result, 200)


@get(
    "/v1/decisions/{decision_id:uuid}",
    operation_id="getDecision",
    dependencies=DEPENDENCIES,
    tags=["governance"],
    summary="A recorded gate decision: per-rule results, policy versions, inputs digest",
)
async def get_decision(
    ctx: Ctx, principal: Caller, decision_id: FromPath[UUID], min_position: MinPosition = None
) -> dict[str, Any]:
    await ctx.wait_for(min_position)
    row = visible(
        await gq.decision(ctx.pool, str(decision_id), scope_of(principal)),
        f"decision {decision_id}",
        principal,
        Action.PROJECT_READ,
    )
    return row


ROUTES: list[Any] = [
    get_decision,
    OrgPolicyController,
    ProjectGovernanceController,
    PromotionController,
    ApprovalController,
    ExceptionController,
]
