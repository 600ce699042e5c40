"""The PeaRL Application: one method per command, used by the HTTP, NATS, MCP and CLI paths."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Mapper, Recording
from eventsourcing.popo import POPOFactory

from contracts.commands import CreateOrg, CreateProject, IssueApiKey, RecordFinding
from contracts.text import UNSTORABLE, escape_controls
from domain.access import AccessDenial
from domain.agents_app import AgentCommands
from domain.api_key import ApiKey, api_key_id, generate_key, split_token
from domain.audit_checkpoint import AuditCheckpoint, checkpoint_id
from domain.authz import SYSTEM_ORG, Action, Principal, Role, authorize
from domain.base import PearlAggregate
from domain.errors import (
    ConcurrencyConflict,
    Conflict,
    CrossOrg,
    Forbidden,
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
    Unauthenticated,
    UnstorableText,
)
from domain.finding import Finding, finding_id
from domain.governance_app import GovernanceCommands
from domain.idempotency import (
    IdempotencyClaim,
    IdempotencyStore,
    MemoryIdempotentRecorder,
    request_digest,
)
from domain.ingest import (
    IngestPlan,
    Report,
    ScanMeta,
    finding_chunks,
    finding_count,
    fix_missing,
    plan_ingest,
)
from domain.org import Org, org_id
from domain.project import Project
from domain.scan_report import ScanReport, scan_report_id
from domain.scan_scope import ScanScope, scan_scope_id
from domain.sla import sla_days_for, sla_due
from domain.storable import StorableMapper, refuse_unstorable_claim
from domain.targets_app import ScanTargetCommands
from domain.tasks_app import TaskCommands

A = TypeVar("A", bound=Aggregate)
#: An aggregate of one org (every PeaRL aggregate).
OA = TypeVar("OA", bound=PearlAggregate)
Clock = Callable[[], datetime]
#: Findings saved per transaction when a report is larger than this.
INGEST_CHUNK = 5000


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


class PearlApp(
    AgentCommands, TaskCommands, GovernanceCommands, ScanTargetCommands, Application[UUID]
):
    """Command handlers and aggregate queries over one event store (the `pearl_events` table)."""

    name = "pearl"
    #: Aggregates are cached per process and brought up to date with the events stored since
    #: on every load (one indexed read), so a long history is not replayed each time.
    env = {"AGGREGATE_CACHE_MAXSIZE": "256"}

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

    # --- plumbing -------------------------------------------------------------------------

    def load(self, cls: type[A], aggregate_id: UUID, what: str) -> A:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"{what} not found") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"{what} not found")
        return aggregate

    def exists(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self.repository

    def replayed(self, org: str, idem: Idempotency | None) -> CommandResult | None:
        if idem is None:
            return None
        store = self.recorder
        assert isinstance(store, IdempotencyStore)
        record = store.find_idempotency(org, idem.key)
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
            position = max(r.notification.id for r in recordings)
        else:
            position = self.recorder.max_notification_id() or 0
        return CommandResult(ids, position)

    def now(self) -> str:
        return self.clock().isoformat()

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

    # --- orgs and keys ----------------------------------------------------------------------

    def create_org(
        self, principal: Principal, cmd: CreateOrg, idem: Idempotency | None = None
    ) -> CommandResult:
        if not principal.is_platform_admin:
            raise Forbidden("only platform administrators may create orgs")
        if (replay := self.replayed(cmd.slug, idem)) is not None:
            return replay
        if cmd.slug == SYSTEM_ORG or self.exists(org_id(cmd.slug)):
            raise Conflict(f"org {cmd.slug!r} already exists")
        org = Org(org=cmd.slug, name=cmd.name, actor=principal.actor)
        return self.commit(cmd.slug, {"org": cmd.slug, "id": str(org.id)}, idem, org)

    def get_org(self, principal: Principal, slug: str) -> Org:
        authorize(principal, Action.ORG_READ, slug)
        return self.load(Org, org_id(slug), f"org {slug!r}")

    def issue_api_key(
        self, principal: Principal, org: str, cmd: IssueApiKey, idem: Idempotency | None = None
    ) -> CommandResult:
        """Issue a key; its token is in the answer once and never stored or replayed.

        The same `Idempotency-Key` again answers the same key id without its token: one
        credential is minted, and its secret is never shown twice.
        """
        authorize(principal, Action.APIKEY_ISSUE, org)
        if Role.AGENT in cmd.roles:
            raise InvalidInput(
                "agent credentials come with a registered agent: POST /v1/orgs/{org}/agents"
            )
        if (replay := self.replayed(org, idem)) is not None:
            return replay
        if org != SYSTEM_ORG:
            self.load(Org, org_id(org), f"org {org!r}")
        return self._issue_key(org, cmd, principal.actor, idem)

    def mint_key(self, org: str, cmd: IssueApiKey, actor: str) -> tuple[ApiKey, str]:
        """A new key aggregate (unsaved) and its token, which exists only in this answer."""
        new = generate_key(org)
        expires = cmd.expires_in_days and (self.clock() + timedelta(days=cmd.expires_in_days))
        key = ApiKey(
            org=org,
            key_id=new.key_id,
            name=cmd.name,
            roles=list(cmd.roles),
            salt=new.salt,
            digest=new.digest,
            expires_at=expires.isoformat() if expires else None,
            actor=actor,
        )
        return key, new.token

    def _issue_key(
        self, org: str, cmd: IssueApiKey, actor: str, idem: Idempotency | None = None
    ) -> CommandResult:
        key, token = self.mint_key(org, cmd, actor)
        result = self.commit(org, {"key_id": key.key_id, "org": org}, idem, key)
        return result if result.replayed else result.revealing(token)

    def bootstrap_admin_key(self, name: str = "bootstrap admin") -> str:
        """Create a platform administrator key (first start of an installation)."""
        cmd = IssueApiKey(name=name, roles=["admin"])
        return self._issue_key(SYSTEM_ORG, cmd, "system:bootstrap").secret["token"]

    def revoke_api_key(
        self,
        principal: Principal,
        org: str,
        key_id: str,
        reason: str,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        authorize(principal, Action.APIKEY_REVOKE, org)
        if (replay := self.replayed(org, idem)) is not None:
            return replay
        key = self.load(ApiKey, api_key_id(key_id), f"API key {key_id!r}")
        if key.org != org:
            raise NotFound(f"API key {key_id!r} not found")
        key.revoke(reason=reason, actor=principal.actor)
        return self.commit(org, {"key_id": key_id}, idem, key)

    def record_checkpoint(
        self, org: str, seq: int, position: int, digest: str, public_key: str, signature: str
    ) -> bool:
        """Store a signed audit checkpoint once (False when that head was already signed)."""
        if self.exists(checkpoint_id(org, seq)):
            return False
        checkpoint = AuditCheckpoint(
            org=org,
            seq=seq,
            position=position,
            hash=digest,
            public_key=public_key,
            signature=signature,
            signed_at=self.now(),
            actor="system:audit-checkpoint",
        )
        try:
            self.save(checkpoint)
        except IntegrityError:
            return False
        return True

    def mark_key_used(self, key_id: str) -> None:
        """Record a key's last use; a concurrent use recorded first is as good."""
        key = self.load(ApiKey, api_key_id(key_id), f"API key {key_id!r}")
        key.use(at=self.now())
        try:
            self.save(key)
        except IntegrityError:
            return

    def authenticate(self, token: str) -> Principal:
        """The principal a `pk_…` token stands for; Unauthenticated for anything else."""
        org, key_id = split_token(token)
        try:
            key: Aggregate = self.repository.get(api_key_id(key_id))
        except AggregateNotFoundError:
            raise Unauthenticated("unknown API key") from None
        if not isinstance(key, ApiKey) or key.org != org or not key.matches(token):
            raise Unauthenticated("unknown API key")
        if key.revoked:
            raise Unauthenticated("API key revoked")
        if key.expires_at and datetime.fromisoformat(key.expires_at) <= self.clock():
            raise Unauthenticated("API key expired")
        roles = frozenset(Role(r) for r in key.roles)
        kind = "system" if org == SYSTEM_ORG else "agent" if Role.AGENT in roles else "service"
        grant = self.agent_grant(org, key.agent) if key.agent else None
        return Principal(id=key_id, org=org, roles=roles, kind=kind, name=key.name, agent=grant)

    # --- projects ---------------------------------------------------------------------------

    def create_project(
        self, principal: Principal, org: str, cmd: CreateProject, idem: Idempotency | None = None
    ) -> CommandResult:
        authorize(principal, Action.PROJECT_CREATE, org)
        if (replay := self.replayed(org, idem)) is not None:
            return replay
        self.load(Org, org_id(org), f"org {org!r}")
        if len(set(cmd.environments)) != len(cmd.environments):
            raise InvalidInput("environments must be unique")
        project = Project(
            org=org,
            slug=cmd.slug,
            name=cmd.name,
            environments=list(cmd.environments),
            actor=principal.actor,
        )
        if self.exists(project.id):
            raise Conflict(f"project {cmd.slug!r} already exists in org {org!r}")
        ids = {"org": org, "id": str(project.id), "slug": cmd.slug}
        return self.commit(org, ids, idem, project)

    def get_project(self, principal: Principal, project_id: UUID) -> Project:
        """The project, if the principal may see it; another org's project is simply not found."""
        return self.owned_project(principal, project_id, Action.PROJECT_READ)

    def owned_project(
        self,
        principal: Principal,
        project_id: UUID,
        action: Action,
        org: str | None = None,
        environment: str | None = None,
    ) -> Project:
        """The project if the principal may act on it (and it is in `org`, when one is named);
        an agent's autonomy is judged in `environment` (`*` when the action has none)."""
        what = f"project {project_id}"
        return self.owned(principal, Project, project_id, what, action, org, environment)

    def owned(
        self,
        principal: Principal,
        cls: type[OA],
        aggregate_id: UUID,
        what: str,
        action: Action,
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

    # --- findings ---------------------------------------------------------------------------

    def record_finding(
        self,
        principal: Principal,
        project_id: UUID,
        cmd: RecordFinding,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        """Record one finding; the same fingerprint again only marks it seen again."""
        project = self.owned_project(principal, project_id, Action.FINDING_RECORD, org)
        if (replay := self.replayed(project.org, idem)) is not None:
            return replay
        fingerprint = cmd.fingerprint or manual_fingerprint(cmd)
        fid = finding_id(project.id, fingerprint)
        seen_at = self.clock()
        if self.exists(fid):
            finding = self.load(Finding, fid, f"finding {fid}")
            finding.observe(cmd.tool, "manual", seen_at.isoformat(), principal.actor)
        else:
            finding = Finding(
                org=project.org,
                project_id=str(project.id),
                fingerprint=fingerprint,
                tool=cmd.tool,
                rule_id=cmd.rule_id,
                title=cmd.title,
                severity=cmd.severity,
                details={
                    "path": cmd.path,
                    "line": cmd.line,
                    "message": cmd.message,
                    "cwe": list(cmd.cwe),
                    "cve": list(cmd.cve),
                },
                scan_id=None,
                seen_at=seen_at.isoformat(),
                sla_due=sla_due(cmd.severity, seen_at),
                sla_days=sla_days_for(cmd.severity),
                actor=principal.actor,
            )
        ids = {"id": str(fid), "project_id": str(project.id), "fingerprint": fingerprint}
        return self.commit(project.org, ids, idem, finding)

    def triage_finding(
        self,
        principal: Principal,
        fid: UUID,
        status: str,
        justification: str,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        """A person's decision: false positive, not affected, or accepted risk (VEX vocabulary)."""
        finding = self.owned(principal, Finding, fid, f"finding {fid}", Action.FINDING_TRIAGE)
        if (replay := self.replayed(finding.org, idem)) is not None:
            return replay
        finding.triage(status=status, justification=justification, actor=principal.actor)
        return self.commit(finding.org, {"id": str(fid), "status": status}, idem, finding)

    # --- scans ------------------------------------------------------------------------------

    def authorize_scan(self, principal: Principal, project_id: UUID) -> Project:
        """Check before the (expensive) upload is parsed that the caller may submit scans."""
        return self.owned_project(principal, project_id, Action.SCAN_SUBMIT)

    def submit_scan(
        self,
        principal: Principal,
        project_id: UUID,
        report: Report,
        meta: ScanMeta,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        """Ingest a parsed report in one transaction: findings, scope membership, the scan."""
        project = self.owned_project(principal, project_id, Action.SCAN_SUBMIT, org)
        if (replay := self.replayed(project.org, idem)) is not None:
            return replay
        pid = str(project.id)
        scan_id = scan_report_id(
            pid, report.tool, meta.target, meta.branch, meta.digest, meta.commit
        )
        if self.exists(scan_id):
            scan = self.load(ScanReport, scan_id, f"scan {scan_id}")
            position = self.recorder.max_notification_id() or 0
            return CommandResult(scan.summary(), position, replayed=True)
        now = self.clock()
        plan = self._ingest_findings(project, report, str(scan_id), now, principal.actor)
        if report.sanitized:
            plan.counts["sanitized"] = report.sanitized
        scope_id = scan_scope_id(pid, report.tool, meta.target, meta.branch)
        scope = self.load_many(ScanScope, [scope_id]).get(scope_id) or ScanScope(
            org=project.org,
            project_id=pid,
            tool=report.tool,
            target=meta.target,
            branch=meta.branch,
            actor=principal.actor,
        )
        gone: set[str] = set()
        fixed: list[Finding] = []
        if meta.full:
            gone = scope.present - plan.seen_ids
            candidates = self.load_many(Finding, [UUID(i) for i in gone])
            still = self._reported_elsewhere(candidates.values(), pid, report.tool, meta)
            fixable = [f for f in candidates.values() if str(f.id) not in still]
            fixed = fix_missing(fixable, str(scan_id), now, principal.actor)
            plan.counts["fixed"] = len(fixed)
            if len(fixed) > INGEST_CHUNK:
                for start in range(0, len(fixed), INGEST_CHUNK):
                    self.save(*fixed[start : start + INGEST_CHUNK])
                fixed = []
        scope.record_scan(str(scan_id), plan.seen_ids, gone, principal.actor)
        scan = ScanReport(
            org=project.org,
            project_id=pid,
            tool=report.tool,
            tool_version=report.tool_version,
            format=report.format,
            target=meta.target,
            branch=meta.branch,
            full=meta.full,
            digest=meta.digest,
            size=meta.size,
            counts=plan.counts,
            submitted_at=now.isoformat(),
            actor=principal.actor,
            commit=meta.commit,
        )
        return self.commit(project.org, scan.summary(), idem, scan, scope, *plan.changed, *fixed)

    def _ingest_findings(
        self, project: Project, report: Report, scan_id: str, now: datetime, actor: str
    ) -> IngestPlan:
        """Record/observe a report's findings; large reports in chunks of bounded memory.

        A report of up to INGEST_CHUNK findings is saved with its ScanReport in one transaction.
        A larger one is saved chunk by chunk and its ScanReport last, as the commit marker: a
        retry after a crash skips what the interrupted attempt already applied (same scan id).
        """
        pid = str(project.id)
        single = finding_count(report) <= INGEST_CHUNK
        total = IngestPlan(
            [], set(), {"new": 0, "seen_again": 0, "reopened": 0, "fixed": 0, "total": 0}
        )
        for part in finding_chunks(report, INGEST_CHUNK):
            ids = [finding_id(pid, f.fingerprint) for f in part.findings]
            plan = plan_ingest(
                project=project,
                report=part,
                scan_id=scan_id,
                now=now,
                existing=self.load_many(Finding, ids),
                actor=actor,
            )
            if single:
                return plan
            plan.seen_ids -= total.seen_ids  # a fingerprint repeated across chunks counts once
            self.save(*plan.changed)
            total.seen_ids |= plan.seen_ids
            for name, value in plan.counts.items():
                total.counts[name] += value
        total.counts["total"] = len(total.seen_ids)
        return total

    def _reported_elsewhere(
        self, findings: Iterable[Finding], project_id: str, tool: str, meta: ScanMeta
    ) -> set[str]:
        """Ids still present in another tool's scope of the same target: not fixed yet."""
        others = {source for f in findings for source in f.sources if source != tool}
        scope_ids = [scan_scope_id(project_id, other, meta.target, meta.branch) for other in others]
        present: set[str] = set()
        for scope in self.load_many(ScanScope, scope_ids).values():
            present |= scope.present
        return present

    def get_scan(self, principal: Principal, scan_id: UUID) -> ScanReport:
        return self.owned(principal, ScanReport, scan_id, f"scan {scan_id}", Action.FINDING_READ)

    def project_as_of(
        self, principal: Principal, project_id: UUID, finding_ids: list[UUID], position: int
    ) -> tuple[Project | None, list[Finding]]:
        """Time travel: the project and its findings as they were at a store position."""
        current = self.owned_project(principal, project_id, Action.FINDING_READ)
        project = self.load_many(Project, [current.id], upto=position).get(current.id)
        findings = self.load_many(Finding, finding_ids, upto=position)
        return project, [f for f in findings.values() if f.org == current.org]

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

    def breach_slas(self, finding_ids: list[UUID]) -> int:
        """The scheduler's command: mark open findings past their SLA due date (one save)."""
        at = self.now()
        due = [
            f
            for f in self.load_many(Finding, finding_ids).values()
            if f.breach_sla(at, "system:scheduler")
        ]
        if due:
            try:
                self.save(*due)
            except IntegrityError:  # a finding changed meanwhile: the next tick retries it
                return 0
        return len(due)

    def get_finding(self, principal: Principal, fid: UUID) -> Finding:
        return self.owned(principal, Finding, fid, f"finding {fid}", Action.FINDING_READ)


def manual_fingerprint(cmd: RecordFinding) -> str:
    """Fingerprint of a hand-recorded finding: tool, rule, path and message, never the line."""
    parts = (cmd.tool, cmd.rule_id, cmd.path or "", " ".join(cmd.message.split()) or cmd.title)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def command_idempotency(key: str | None, *parts: Any) -> Idempotency | None:
    """Build the idempotency of a command from its key and the parts that define the request."""
    return None if not key else Idempotency(key, request_digest(*parts))
