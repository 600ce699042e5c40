"""Bus command routing: subject → command struct → the same Application method as HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from contracts.commands import Command, CreateProject, RecordFinding, SubmitScan
from contracts.governance import (
    CommentApproval,
    DecideApproval,
    DecideException,
    RegisterVersion,
    RequestException,
    RequestPromotion,
    SubmitTestResults,
)
from contracts.targets import RegisterScanTarget, RequestScanJob
from contracts.tasks import ClaimTask, CompleteTask, CreateTasks, ReleaseTask, TaskHeartbeat
from contracts.text import explain
from domain.authz import Principal
from domain.errors import InvalidInput
from domain.ingest import ScanMeta
from domain.kernel import CommandResult, Idempotency
from domain.pearl_app import PearlApp
from domain.scanners import ReportStream
from services.bus_handlers import Handler, by_id, uuid_of
from services.reports import ReportStore, Spooled, meta_for, parse_file, spool_bytes
from services.target_commands import register_scan_target, request_scan_job

Prepare = Callable[[ReportStore | None, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    """How one `<aggregate>.<command>` is decoded, prepared (async I/O) and handled."""

    body: type[Command]
    handle: Handler
    prepare: Prepare | None = None


def _create_project(
    app: PearlApp, p: Principal, org: str, cmd: CreateProject, idem: Idempotency | None, _: Any
) -> CommandResult:
    return app.create_project(p, org, cmd, idem)


@dataclass(frozen=True, slots=True)
class PreparedScan:
    report: ReportStream
    meta: ScanMeta

    def close(self) -> None:
        self.report.close()


async def _prepare_scan(store: ReportStore | None, cmd: SubmitScan) -> PreparedScan:
    """Fetch (or take inline) the raw report, check its digest, keep it, parse it whole."""
    if (cmd.object is None) == (cmd.report is None):
        raise InvalidInput("a scan needs exactly one of data.object or data.report")
    if cmd.object is not None:
        if store is None:
            raise InvalidInput("this worker has no report store")
        async with store.fetch(cmd.object) as spooled:
            return await _parse(spooled, cmd)
    with spool_bytes(msgspec.json.encode(cmd.report)) as spooled:
        if cmd.digest and cmd.digest != spooled.digest:
            raise InvalidInput("data.digest does not match the inline report")
        if store is not None:
            await store.put(spooled)
        return await _parse(spooled, cmd)


async def _parse(spooled: Spooled, cmd: SubmitScan) -> PreparedScan:
    report = await asyncio.to_thread(parse_file, spooled.path, cmd.tool)
    return PreparedScan(report, meta_for(spooled, cmd.target, cmd.branch, cmd.full, cmd.commit))


def _submit_scan(
    app: PearlApp,
    p: Principal,
    org: str,
    cmd: SubmitScan,
    idem: Idempotency | None,
    prepared: PreparedScan | None,
) -> CommandResult:
    if prepared is None:
        raise InvalidInput("the scan report was not prepared")
    project_id = uuid_of(cmd.project_id, "project_id")
    return app.submit_scan(p, project_id, prepared.report, prepared.meta, idem, org=org)


def _create_tasks(
    app: PearlApp, p: Principal, org: str, cmd: CreateTasks, idem: Idempotency | None, _: Any
) -> CommandResult:
    """Over the bus a packet is cut from the findings it names (HTTP can also pick them)."""
    if not cmd.finding_ids:
        raise InvalidInput("data.finding_ids must name the findings to cut packets from")
    project_id = uuid_of(cmd.project_id, "project_id")
    return app.create_tasks(p, project_id, cmd, [], idem, org=org)


ROUTES: dict[tuple[str, str], Route] = {
    ("finding", "record"): Route(RecordFinding, by_id("record_finding", "project_id")),
    ("project", "create"): Route(CreateProject, _create_project),
    ("scan", "submit"): Route(SubmitScan, _submit_scan, _prepare_scan),
    ("scan_target", "register"): Route(RegisterScanTarget, register_scan_target),
    ("scan_job", "request"): Route(RequestScanJob, request_scan_job),
    ("task", "create"): Route(CreateTasks, _create_tasks),
    ("task", "claim"): Route(ClaimTask, by_id("claim_task", "task_id")),
    ("task", "heartbeat"): Route(TaskHeartbeat, by_id("heartbeat_task", "task_id")),
    ("task", "complete"): Route(CompleteTask, by_id("complete_task", "task_id")),
    ("task", "release"): Route(ReleaseTask, by_id("release_task", "task_id")),
    ("version", "register"): Route(RegisterVersion, by_id("register_version", "project_id")),
    ("tests", "submit"): Route(SubmitTestResults, by_id("submit_test_results", "project_id")),
    ("promotion", "request"): Route(RequestPromotion, by_id("request_promotion", "project_id")),
    ("exception", "request"): Route(RequestException, by_id("request_exception", "project_id")),
    ("exception", "decide"): Route(DecideException, by_id("decide_exception", "exception_id")),
    ("approval", "decide"): Route(DecideApproval, by_id("decide_approval", "request_id")),
    ("approval", "comment"): Route(CommentApproval, by_id("comment_approval", "request_id")),
}


def decode_body(route: Route, data: dict[str, Any]) -> Any:
    """Validate a command's data against its struct; InvalidInput naming the bad field."""
    try:
        return msgspec.convert(data, type=route.body, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid command data: {explain(str(exc))}") from None
