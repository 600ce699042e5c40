"""HTTP export of a project's triage as VEX (OpenVEX 0.2.0 or CycloneDX 1.5)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, MediaType, Response, get
from litestar.params import FromPath, FromQuery, QueryParameter

from domain.authz import Action
from domain.vex import cyclonedx_vex, encode, openvex_document
from projections import queries
from projections.queries import Pool
from services.api.params import Caller, Ctx, MinPosition
from services.api.routes import DEPENDENCIES, visible_project

PAGE_SIZE = 1000
VexFormat = Literal["openvex", "cyclonedx"]
Author = Annotated[
    str | None,
    QueryParameter(
        required=False,
        min_length=1,
        max_length=200,
        description="The document's author (default: the project's org)",
    ),
]


async def all_findings(pool: Pool, org: str, project_id: str) -> list[dict[str, Any]]:
    """Every finding of a project, read page by page (keyset on id, PAGE_SIZE per query)."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await queries.findings(pool, org, project_id, after=cursor, limit=PAGE_SIZE)
        rows.extend(page.items)
        if page.next_cursor is None:
            return rows
        cursor = page.next_cursor


class VexController(Controller):
    path = "/v1/projects"
    tags = ["findings"]
    dependencies = DEPENDENCIES

    @get(
        "/{project_id:uuid}/vex",
        operation_id="exportVex",
        summary="The project's findings and triage decisions as an OpenVEX or CycloneDX VEX",
        description="Vulnerability findings (and code findings, named by rule id) with their "
        "PeaRL status mapped to VEX: open → affected, fixed → fixed, not_affected and "
        "false_positive → not_affected (CycloneDX false_positive), accepted_risk → affected "
        "with the risk acceptance as action statement.",
        media_type=MediaType.JSON,
    )
    async def export_vex(
        self,
        ctx: Ctx,
        principal: Caller,
        project_id: FromPath[UUID],
        format: FromQuery[VexFormat] = "openvex",
        author: Author = None,
        min_position: MinPosition = None,
    ) -> Response[bytes]:
        await ctx.wait_for(min_position)
        project = await visible_project(ctx, principal, project_id, Action.FINDING_READ)
        rows = await all_findings(ctx.pool, project["org"], str(project_id))
        build = cyclonedx_vex if format == "cyclonedx" else openvex_document
        document = build(project, rows, author or project["org"], ctx.pearl.now())
        return Response(encode(document), media_type=MediaType.JSON)
