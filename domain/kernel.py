"""The application kernel: one eventsourcing Application that every command builds on.

Commands load aggregates (`load`, `load_many`, `as_of`), check tenancy (`owned`,
`owned_project`), answer a repeated idempotency key (`replayed`) and save every aggregate they
changed, with the idempotency claim, in one transaction (`commit`). Refusals are recorded in the
caller's org (`audited`, `record_denial`). ADR 0011 (docs/adr/0011-one-application.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Mapper, Recording
from eventsourcing.popo import POPOFactory

from contracts.text import UNSTORABLE, escape_controls
from domain.access import AccessDenial
from domain.authz import Action, Principal, authorize
from domain.base import PearlAggregate, current_channel
from domain.errors import (
    ConcurrencyConflict,
    Conflict,
    CrossOrg,
    Forbidden,
    IdempotencyMismatch,
    NotFound,
    UnstorableText,
)
from domain.idempotency import (
    IdempotencyClaim,
    IdempotencyRecord,
    IdempotencyStore,
    MemoryIdempotentRecorder,
    request_digest,
)
from domain.project import Project
from domain.storable import StorableMapper, refuse_unstorable_claim

A = TypeVar("A", bound=Aggregate)
#: An aggregate of one org (every PeaRL aggregate).
OA = TypeVar("OA", bound=PearlAggregate)
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A command's idempotency key and the digest of what it asked for."""

    key: str
    request_hash: str

    def __post_init__(self) -> None:
        if UNSTORABLE.search(self.key):  # it is stored (and looked up) as text
            raise UnstorableText("the idempotency key holds NUL or a lone surrogate")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command answers: the ids it touched and the store position of its last event."""

    ids: dict[str, Any]
    position: int
    replayed: bool = False
    secret: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {**self.ids, **self.secret, "position": self.position}

    def revealing(self, token: str) -> CommandResult:
        """This result with a credential shown once in the answer (never stored or replayed)."""
        return replace(self, secret={"token": token})


def command_idempotency(key: str | None, *parts: Any) -> Idempotency | None:
    """Build the idempotency of a command from its key and the parts that define the request."""
    return None if not key else Idempotency(key, request_digest(*parts))


class Kernel(Application[UUID]):
    """One event store (the `pearl_events` table), one Application: commands go through this."""

    name = "pearl"
    #: Aggregates are cached per process and brought up to date with the events stored since
    #: on every load (one indexed read), so a long history is not replayed each time.
    env = {"AGGREGATE_CACHE_MAXSIZE": "256"}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # eventsourcing names a subclass after its class; every subclass (PearlApp) is the one
        # `pearl` application: its env prefix and the relay's `pearl_events` table follow it.
        if "name" not in cls.__dict__:
            cls.name = Kernel.name
        super().__init_subclass__(**kwargs)

    def __init__(self, env: dict[str, str] | None = None, clock: Clock = utcnow) -> None:
        self.clock = clock
        super().__init__(env)

    def construct_mapper(self) -> Mapper[UUID]:
        """The library's mapper, refusing any event a projection could not apply (NUL...)."""
        return self.factory.mapper(
            transcoder=self.construct_transcoder(), mapper_class=StorableMapper
        )

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """Save events (and an idempotency claim); unstorable text is `UnstorableText`."""
        refuse_unstorable_claim(kwargs.get("idempotency"))
        return super().save(*objs, **kwargs)

    def construct_recorder(self) -> ApplicationRecorder:
        if isinstance(self.factory, POPOFactory):
            return MemoryIdempotentRecorder()
        recorder = super().construct_recorder()
        if not isinstance(recorder, IdempotencyStore):
            msg = "PearlApp needs a recorder with idempotency claims (APPLICATION_RECORDER_TOPIC)"
            raise TypeError(msg)
        return recorder

    # --- loading ---------------------------------------------------------------------------

    def load(self, cls: type[A], aggregate_id: UUID, what: str, *, shallow: bool = False) -> A:
        """The aggregate as stored now, or `NotFound(f"{what} not found")`.

        It comes from the aggregate cache, brought up to date with the events stored since (one
        indexed read, usually empty). `shallow` copies only the lists and dicts events change,
        not the whole aggregate (a deep copy of a long decision history costs more than a gate).
        """
        try:
            aggregate: Aggregate = self.repository.get(
                aggregate_id, deepcopy_from_cache=not shallow
            )
        except AggregateNotFoundError:
            raise NotFound(f"{what} not found") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"{what} not found")
        return _shallow_copy(aggregate) if shallow else aggregate

    def exists(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self.repository

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate as stored now, or None when there is none (of that class)."""
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, cls) else None

    # --- saving ----------------------------------------------------------------------------

    def idempotency_record(self, org: str, key: str) -> IdempotencyRecord | None:
        """The claim an idempotency key of the org made, if it was used."""
        store = self.recorder
        assert isinstance(store, IdempotencyStore)  # construct_recorder guarantees it
        return store.find_idempotency(org, key)

    def replayed(self, org: str, idem: Idempotency | None) -> CommandResult | None:
        if idem is None:
            return None
        record = self.idempotency_record(org, idem.key)
        if record is None:
            return None
        if record.request_hash != idem.request_hash:
            raise IdempotencyMismatch(
                f"Idempotency-Key {idem.key!r} was already used with a different request"
            )
        return CommandResult(record.response, record.position, replayed=True)

    def commit(
        self, org: str, ids: dict[str, Any], idem: Idempotency | None, *aggregates: Aggregate
    ) -> CommandResult:
        """Save the aggregates' new events, and the idempotency claim, in one transaction."""
        claim = idem and IdempotencyClaim(org, idem.key, idem.request_hash, ids)
        try:
            recordings = self.save(*aggregates, idempotency=claim)
        except IntegrityError:
            replay = self.replayed(org, idem)
            if replay is not None:
                return replay
            raise ConcurrencyConflict("another change was saved first; retry the command") from None
        if recordings:
            return CommandResult(ids, max(r.notification.id for r in recordings))
        return CommandResult(ids, self.position)

    def save_quietly(self, *aggregates: Aggregate) -> bool:
        """Save system bookkeeping; False when a concurrent save won (nothing is saved then)."""
        try:
            self.save(*aggregates)
        except IntegrityError:
            return False
        return True

    def now(self) -> str:
        return self.clock().isoformat()

    @property
    def position(self) -> int:
        """The store position of the last event saved (0 for an empty store)."""
        return self.recorder.max_notification_id() or 0

    def record_denial(
        self,
        org: str,
        actor: str,
        action: str,
        resource: str,
        reason: str,
        code: str,
        channel: str,
    ) -> None:
        """Record a refused attempt in the caller's org (the target org sees no trace of it)."""
        # Every field may come from the refused request: written with visible escapes, so the
        # record of a hostile request is always storable and projectable.
        denial = AccessDenial(
            org=escape_controls(org)[:200],
            actor=escape_controls(actor)[:200],
            action=escape_controls(action)[:200],
            resource=escape_controls(resource)[:500],
            reason=escape_controls(reason)[:500],
            code=escape_controls(code)[:100],
            channel=channel,
            at=self.now(),
        )
        self.save(denial)

    @contextmanager
    def audited(self, principal: Principal, action: str, resource: str) -> Iterator[None]:
        """Refusals inside become audit events of the caller's org, whichever way they came in.

        Marked `recorded`, so the HTTP, NATS and MCP adapters do not record them twice.
        """
        try:
            yield
        except (Forbidden, Conflict) as exc:
            if not exc.recorded:
                self.record_denial(
                    principal.org,
                    principal.actor,
                    action,
                    resource,
                    exc.detail,
                    exc.code,
                    current_channel.get(),
                )
                exc.recorded = True
            raise

    # --- tenancy ---------------------------------------------------------------------------

    def owned_project(
        self,
        principal: Principal,
        project_id: UUID,
        action: Action,
        *,
        org: str | None = None,
        environment: str | None = None,
    ) -> Project:
        """The project if the principal may act on it (and it is in `org`, when one is named);
        an agent's autonomy is judged in `environment` (`*` when the action has none)."""
        what = f"project {project_id}"
        return self.owned(
            principal, Project, project_id, what, action, org=org, environment=environment
        )

    def owned(
        self,
        principal: Principal,
        cls: type[OA],
        aggregate_id: UUID,
        what: str,
        action: Action,
        *,
        org: str | None = None,
        environment: str | None = None,
    ) -> OA:
        """An aggregate the principal may act on. Another org's is not found (CrossOrg, so the
        refusal is recorded as a denial, never naming that org), and so is one outside `org`
        when a command names an org (a bus subject)."""
        aggregate = self.load(cls, aggregate_id, what)
        if org is not None and aggregate.org != org:
            raise CrossOrg(f"{what} not found in org {org!r}")
        authorize(principal, action, aggregate.org, environment, what)
        return aggregate

    # --- bulk and time travel ---------------------------------------------------------------

    def load_many(self, cls: type[A], ids: list[UUID], upto: int | None = None) -> dict[UUID, A]:
        """Reconstruct many aggregates from one bulk read (10,000 findings: one round trip)."""
        store = self.recorder
        assert isinstance(store, IdempotencyStore)
        by_id: dict[UUID, list[Any]] = {}
        for stored in store.select_events_for(ids, upto):
            by_id.setdefault(UUID(str(stored.originator_id)), []).append(
                self.mapper.to_domain_event(stored)
            )
        loaded: dict[UUID, A] = {}
        for aggregate_id, events in by_id.items():
            aggregate = project_aggregate(None, events)
            if isinstance(aggregate, cls):
                loaded[aggregate_id] = aggregate
        return loaded

    def as_of(self, cls: type[A], aggregate_id: UUID, position: int) -> A | None:
        """Time travel for one aggregate (callers authorized the current one already)."""
        return self.load_many(cls, [aggregate_id], upto=position).get(aggregate_id)


def _shallow_copy(aggregate: A) -> A:
    """A copy whose attribute lists and dicts are its own: events append to or reassign
    them, so changing the copy leaves the original (the cached one) as it was."""
    clone = copy.copy(aggregate)
    for name, value in vars(aggregate).items():
        if isinstance(value, list | dict):
            setattr(clone, name, copy.copy(value))
    return clone
