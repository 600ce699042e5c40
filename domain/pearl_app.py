"""The PeaRL Application: one method per command, used by the HTTP, NATS, MCP and CLI paths."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from contracts.commands import CreateOrg, CreateProject, IssueApiKey, RecordFinding
from domain.agents_app import AgentCommands
from domain.api_key import ApiKey, api_key_id, mint_key, split_token
from domain.audit_checkpoint import AuditCheckpoint, checkpoint_id
from domain.authz import SYSTEM_ORG, Action, Principal, Role, authorize
from domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unauthenticated,
)
from domain.finding import Finding, finding_id
from domain.governance_app import GovernanceCommands
from domain.ingest import (
    IngestPlan,
    Report,
    ScanMeta,
    finding_chunks,
    finding_count,
    fix_missing,
    plan_ingest,
)
from domain.kernel import CommandResult, Idempotency, Kernel
from domain.org import Org, org_id
from domain.project import Project
from domain.scan_report import ScanReport, scan_report_id
from domain.scan_scope import ScanScope, scan_scope_id
from domain.sla import sla_days_for, sla_due
from domain.targets_app import ScanTargetCommands
from domain.tasks_app import TaskCommands

#: Findings saved per transaction when a report is larger than this.
INGEST_CHUNK = 5000


class PearlApp(AgentCommands, TaskCommands, GovernanceCommands, ScanTargetCommands, Kernel):
    """The commands and aggregate queries of PeaRL, on the kernel's one event store."""

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

    def _issue_key(
        self, org: str, cmd: IssueApiKey, actor: str, idem: Idempotency | None = None
    ) -> CommandResult:
        key, token = mint_key(org, cmd, actor, self.clock)
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
        return self.save_quietly(checkpoint)

    def mark_key_used(self, key_id: str) -> None:
        """Record a key's last use; a concurrent use recorded first is as good."""
        key = self.load(ApiKey, api_key_id(key_id), f"API key {key_id!r}")
        key.use(at=self.now())
        self.save_quietly(key)

    def authenticate(self, token: str) -> Principal:
        """The principal a `pk_…` token stands for; Unauthenticated for anything else."""
        org, key_id = split_token(token)
        key = self.find(ApiKey, api_key_id(key_id))
        if key is None or key.org != org or not key.matches(token):
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
        project = self.owned_project(principal, project_id, Action.FINDING_RECORD, org=org)
        if (replay := self.replayed(project.org, idem)) is not None:
            return replay
        fingerprint = cmd.fingerprint or manual_fingerprint(cmd)
        fid = finding_id(project.id, fingerprint)
        seen_at = self.clock()
        finding = self.find(Finding, fid)
        if finding is not None:
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
        project = self.owned_project(principal, project_id, Action.SCAN_SUBMIT, org=org)
        if (replay := self.replayed(project.org, idem)) is not None:
            return replay
        pid = str(project.id)
        scan_id = scan_report_id(
            pid, report.tool, meta.target, meta.branch, meta.digest, meta.commit
        )
        if (done := self.find(ScanReport, scan_id)) is not None:
            return CommandResult(done.summary(), self.position, replayed=True)
        now = self.clock()
        plan = self._ingest_findings(project, report, str(scan_id), now, principal.actor)
        if report.sanitized:
            plan.counts["sanitized"] = report.sanitized
        scope_id = scan_scope_id(pid, report.tool, meta.target, meta.branch)
        scope = self.find(ScanScope, scope_id) or ScanScope(
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

    def breach_slas(self, finding_ids: list[UUID]) -> int:
        """The scheduler's command: mark open findings past their SLA due date (one save)."""
        at = self.now()
        due = [
            f
            for f in self.load_many(Finding, finding_ids).values()
            if f.breach_sla(at, "system:scheduler")
        ]
        if due and not self.save_quietly(*due):
            return 0  # a finding changed meanwhile: the next tick retries it
        return len(due)

    def get_finding(self, principal: Principal, fid: UUID) -> Finding:
        return self.owned(principal, Finding, fid, f"finding {fid}", Action.FINDING_READ)


def manual_fingerprint(cmd: RecordFinding) -> str:
    """Fingerprint of a hand-recorded finding: tool, rule, path and message, never the line."""
    parts = (cmd.tool, cmd.rule_id, cmd.path or "", " ".join(cmd.message.split()) or cmd.title)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
