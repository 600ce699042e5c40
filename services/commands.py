"""Bus command routing: subject → command struct → the same Application method as HTTP."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec

from contracts.commands import Command, CreateProject, RecordFinding
from domain.authz import Principal
from domain.errors import InvalidInput
from domain.pearl_app import CommandResult, Idempotency, PearlApp

Handler = Callable[[PearlApp, Principal, str, Any, Idempotency | None], CommandResult]


@dataclass(frozen=True, slots=True)
class Route:
    """How one `<aggregate>.<command>` is decoded and handled."""

    body: type[Command]
    handle: Handler


def _project_uuid(value: str | None) -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidInput("data.project_id must be a project id (UUID)") from None


def _record_finding(
    app: PearlApp, p: Principal, org: str, cmd: RecordFinding, idem: Idempotency | None
) -> CommandResult:
    return app.record_finding(p, _project_uuid(cmd.project_id), cmd, idem)


def _create_project(
    app: PearlApp, p: Principal, org: str, cmd: CreateProject, idem: Idempotency | None
) -> CommandResult:
    return app.create_project(p, org, cmd, idem)


ROUTES: dict[tuple[str, str], Route] = {
    ("finding", "record"): Route(RecordFinding, _record_finding),
    ("project", "create"): Route(CreateProject, _create_project),
}


def decode_body(route: Route, data: dict[str, Any]) -> Any:
    """Validate a command's data against its struct; InvalidInput naming the bad field."""
    try:
        return msgspec.convert(data, type=route.body, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid command data: {exc}") from None
