"""Bus handlers for scan target and scan job commands (entries for `services.commands.ROUTES`).

`pearl.cmd.<org>.scan_target.register` and `pearl.cmd.<org>.scan_job.request` call the same
Application methods as HTTP; the subject's org must be the target's (or project's) org.
"""

from __future__ import annotations

from typing import Any

from contracts.targets import RegisterScanTarget, RequestScanJob
from domain.authz import Principal
from domain.kernel import CommandResult, Idempotency
from domain.pearl_app import PearlApp
from services.bus_handlers import uuid_of


def register_scan_target(
    app: PearlApp,
    principal: Principal,
    org: str,
    cmd: RegisterScanTarget,
    idem: Idempotency | None,
    _: Any,
) -> CommandResult:
    project_id = uuid_of(cmd.project_id, "project_id")
    return app.register_target(principal, project_id, cmd, idem, org=org)


def request_scan_job(
    app: PearlApp,
    principal: Principal,
    org: str,
    cmd: RequestScanJob,
    idem: Idempotency | None,
    _: Any,
) -> CommandResult:
    target_id = uuid_of(cmd.target_id, "target_id")
    return app.request_scan_job(principal, target_id, cmd.scanner, idem, org=org)
