"""Bus handlers for task packets (entries for `services.commands.ROUTES`).

`pearl.cmd.<org>.task.create|claim|heartbeat|complete|release` call the same Application
methods as HTTP; the subject's org must be the packet's (or project's) org. Over the bus a
packet is cut from the findings named in `finding_ids` (the HTTP route can also pick them).
"""

from __future__ import annotations

from typing import Any

from contracts.tasks import ClaimTask, CompleteTask, CreateTasks, ReleaseTask, TaskHeartbeat
from domain.authz import Principal
from domain.errors import InvalidInput
from domain.pearl_app import CommandResult, Idempotency, PearlApp
from services.target_commands import _uuid


def create_tasks(
    app: PearlApp, p: Principal, org: str, cmd: CreateTasks, idem: Idempotency | None, _: Any
) -> CommandResult:
    if not cmd.finding_ids:
        raise InvalidInput("data.finding_ids must name the findings to cut packets from")
    project_id = _uuid(cmd.project_id, "project_id")
    return app.create_tasks(p, project_id, cmd, [], idem, org=org)


def claim_task(
    app: PearlApp, p: Principal, org: str, cmd: ClaimTask, idem: Idempotency | None, _: Any
) -> CommandResult:
    return app.claim_task(p, _uuid(cmd.task_id, "task_id"), cmd, idem, org)


def heartbeat_task(
    app: PearlApp, p: Principal, org: str, cmd: TaskHeartbeat, idem: Idempotency | None, _: Any
) -> CommandResult:
    return app.heartbeat_task(p, _uuid(cmd.task_id, "task_id"), cmd, org)


def complete_task(
    app: PearlApp, p: Principal, org: str, cmd: CompleteTask, idem: Idempotency | None, _: Any
) -> CommandResult:
    return app.complete_task(p, _uuid(cmd.task_id, "task_id"), cmd, idem, org)


def release_task(
    app: PearlApp, p: Principal, org: str, cmd: ReleaseTask, idem: Idempotency | None, _: Any
) -> CommandResult:
    return app.release_task(p, _uuid(cmd.task_id, "task_id"), cmd, org)
