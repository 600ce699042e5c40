"""The Application plumbing that the capability mixins (scan targets, governance) build on.

`PearlApp` inherits the mixins; their methods are typed against this Protocol, so their
modules do not import `pearl_app` at import time and the modules can refer to each other
without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder

from contracts.commands import IssueApiKey
from domain.api_key import ApiKey
from domain.authz import Action, Principal
from domain.base import PearlAggregate
from domain.ingest import Report, ScanMeta
from domain.project import Project

if TYPE_CHECKING:
    from domain.kernel import CommandResult, Idempotency

A = TypeVar("A", bound=Aggregate)
#: An aggregate of one org (every PeaRL aggregate).
OA = TypeVar("OA", bound=PearlAggregate)


class AppHost(Protocol):
    """The parts of the PeaRL Application the capability mixins use."""

    clock: Callable[[], datetime]

    @property
    def recorder(self) -> ApplicationRecorder: ...

    @property
    def repository(self) -> Repository[UUID]: ...

    def load(self, cls: type[A], aggregate_id: UUID, what: str) -> A: ...

    def load_many(
        self, cls: type[A], ids: list[UUID], upto: int | None = None
    ) -> dict[UUID, A]: ...

    def exists(self, aggregate_id: UUID) -> bool: ...

    def replayed(self, org: str, idem: Idempotency | None) -> CommandResult | None: ...

    def commit(
        self, org: str, ids: dict[str, Any], idem: Idempotency | None, *aggregates: Aggregate
    ) -> CommandResult: ...

    def owned(
        self,
        principal: Principal,
        cls: type[OA],
        aggregate_id: UUID,
        what: str,
        action: Action,
        org: str | None = None,
        environment: str | None = None,
    ) -> OA: ...

    def owned_project(
        self,
        principal: Principal,
        project_id: UUID,
        action: Action,
        org: str | None = None,
        environment: str | None = None,
    ) -> Project: ...

    def mint_key(self, org: str, cmd: IssueApiKey, actor: str) -> tuple[ApiKey, str]: ...

    def audited(
        self, principal: Principal, action: str, resource: str
    ) -> AbstractContextManager[None]: ...

    def record_denial(
        self,
        org: str,
        actor: str,
        action: str,
        resource: str,
        reason: str,
        code: str,
        channel: str,
    ) -> None: ...

    def submit_scan(
        self,
        principal: Principal,
        project_id: UUID,
        report: Report,
        meta: ScanMeta,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult: ...
