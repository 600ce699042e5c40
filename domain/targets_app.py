"""Scan target and scan job commands, mixed into the PeaRL Application.

`PearlApp` inherits `ScanTargetCommands`; its methods use the kernel (`domain.kernel`: load,
commit, replayed, clock) and PearlApp's `submit_scan`, so this module never imports `pearl_app`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from contracts.targets import RegisterScanTarget, TargetDefinition
from domain.authz import Action, Principal, Role
from domain.errors import Conflict
from domain.idempotency import request_digest
from domain.ingest import Report, ScanMeta
from domain.kernel import CommandResult, Idempotency, Kernel
from domain.scan_job import ScanJob, Step, next_step, scan_job_id
from domain.scan_target import ScanTarget, TargetSpec, check_name, scan_target_id

A = TypeVar("A", bound=Aggregate)

RUNNER_ID = "scan-runner"
RUNNER_ACTOR = f"system:{RUNNER_ID}"
SCHEDULER_ACTOR = "system:scheduler"
#: Who may manage targets (their location is a path on the worker's host) and request jobs.
MANAGE_TARGETS = Action.PROJECT_CREATE
REQUEST_JOBS = Action.SCAN_SUBMIT
READ = Action.FINDING_READ


@dataclass(frozen=True, slots=True)
class JobRun:
    """Everything a runner needs for one attempt of a job (plain values, no aggregate)."""

    job_id: UUID
    org: str
    project_id: str
    target_name: str
    scanner: str
    kind: str
    location: str
    rules: str | None
    branch: str
    timeout_seconds: int
    attempt: int


def runner_principal(org: str) -> Principal:
    """The job runner acts inside the job's org with the service role, never as a platform admin."""
    return Principal(
        id=RUNNER_ID, org=org, roles=frozenset({Role.SERVICE}), kind="system", name="scan runner"
    )


def spec_of(cmd: TargetDefinition) -> TargetSpec:
    return TargetSpec(
        kind=cmd.kind,
        location=cmd.location,
        scanners=tuple(cmd.scanners),
        schedule=cmd.schedule,
        rules=cmd.rules,
        branch=cmd.branch,
        timeout_seconds=cmd.timeout_seconds,
    ).check()


def _job_key(job_id: UUID) -> str:
    return f"scan-job:{job_id}"


def _new_job(
    target: ScanTarget, scanner: str, trigger: str, slot: str | None, now: str, actor: str
) -> ScanJob:
    return ScanJob(
        org=target.org,
        project_id=target.project_id,
        target_id=str(target.id),
        target_name=target.name,
        scanner=scanner,
        kind=target.kind,
        location=target.location,
        rules=target.rules,
        branch=target.branch,
        timeout_seconds=target.timeout_seconds,
        trigger=trigger,
        slot=slot,
        requested_at=now,
        actor=actor,
    )


class ScanTargetCommands(Kernel):
    """Register, change and remove scan targets; request, run and finish scan jobs."""

    if TYPE_CHECKING:  # a job's report is ingested by PearlApp's scan command (jobs -> scans)

        def submit_scan(
            self,
            principal: Principal,
            project_id: UUID,
            report: Report,
            meta: ScanMeta,
            idem: Idempotency | None = None,
            org: str | None = None,
        ) -> CommandResult: ...

    # --- targets ----------------------------------------------------------------------------

    def register_target(
        self,
        principal: Principal,
        project_id: UUID,
        cmd: RegisterScanTarget,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        """Register a target; the same definition again is a no-op, a different one a conflict."""
        project = self.owned_project(principal, project_id, MANAGE_TARGETS, org=org)
        if (replay := self.replayed(project.org, idem)) is not None:
            return replay
        name = check_name(cmd.name)
        spec = spec_of(cmd)
        tid = scan_target_id(str(project.id), name)
        ids = {"id": str(tid), "project_id": str(project.id), "name": name}
        if not self.exists(tid):
            target = ScanTarget(
                org=project.org,
                project_id=str(project.id),
                name=name,
                actor=principal.actor,
                **spec.fields(),
            )
            return self.commit(project.org, ids, idem, target)
        target = self.load(ScanTarget, tid, f"scan target {name!r}")
        if target.removed:
            target.reregister(spec, principal.actor)
        elif target.spec != spec:
            raise Conflict(f"scan target {name!r} exists with another definition; update it")
        return self.commit(project.org, ids, idem, target)

    def update_target(
        self,
        principal: Principal,
        target_id: UUID,
        cmd: TargetDefinition,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        target = _target_for(self, principal, target_id, MANAGE_TARGETS, org=org)
        if (replay := self.replayed(target.org, idem)) is not None:
            return replay
        target.update(spec_of(cmd), principal.actor)
        return self.commit(target.org, {"id": str(target.id), "name": target.name}, idem, target)

    def remove_target(
        self,
        principal: Principal,
        target_id: UUID,
        reason: str = "removed",
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        """Remove a target: no more jobs; those not started yet are cancelled when picked up."""
        target = _target_for(self, principal, target_id, MANAGE_TARGETS, org=org)
        if (replay := self.replayed(target.org, idem)) is not None:
            return replay
        target.remove(reason, principal.actor)
        return self.commit(target.org, {"id": str(target.id), "name": target.name}, idem, target)

    def get_target(self, principal: Principal, target_id: UUID) -> ScanTarget:
        return _target_for(self, principal, target_id, READ)

    # --- jobs -------------------------------------------------------------------------------

    def request_scan_job(
        self,
        principal: Principal,
        target_id: UUID,
        scanner: str | None = None,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        """Queue one job per scanner (the one named, or every scanner of the target) now."""
        target = _target_for(self, principal, target_id, REQUEST_JOBS, org)
        if (replay := self.replayed(target.org, idem)) is not None:
            return replay
        now = self.clock().isoformat()
        jobs = [
            _new_job(target, name, "manual", None, now, principal.actor)
            for name in target.select(scanner)
        ]
        ids = {
            "target_id": str(target.id),
            "jobs": [{"id": str(job.id), "scanner": job.scanner} for job in jobs],
        }
        return self.commit(target.org, ids, idem, *jobs)

    def request_scheduled_jobs(self, target_id: UUID, slot: datetime) -> CommandResult:
        """The scheduler's command: the jobs of one schedule slot, each requested at most once."""
        target = self.load(ScanTarget, target_id, f"scan target {target_id}")
        if target.removed or target.schedule is None:
            return self.commit(target.org, {"target_id": str(target.id), "jobs": []}, None)
        at = slot.isoformat()
        now = self.clock().isoformat()
        jobs = [
            _new_job(target, name, "schedule", at, now, SCHEDULER_ACTOR)
            for name in target.scanners
            if not self.exists(scan_job_id(str(target.id), name, "schedule", at))
        ]
        ids = {
            "target_id": str(target.id),
            "slot": at,
            "jobs": [{"id": str(job.id), "scanner": job.scanner} for job in jobs],
        }
        return self.commit(target.org, ids, None, *jobs)

    def get_job(self, principal: Principal, job_id: UUID) -> ScanJob:
        return self.owned(principal, ScanJob, job_id, f"scan job {job_id}", READ)

    def job_step(self, job_id: UUID, attempt: int, grace: float) -> Step:
        """What a runner told to make attempt `attempt` of a job should do now."""
        job = self.load(ScanJob, job_id, f"scan job {job_id}")
        return next_step(job, attempt, self.clock(), grace)

    def start_job(self, job_id: UUID) -> JobRun | None:
        """Begin a job's next attempt; None (and the job cancelled) if its target was removed."""
        job = self.load(ScanJob, job_id, f"scan job {job_id}")
        target = self.load(ScanTarget, UUID(job.target_id), f"scan target {job.target_id}")
        now = self.clock()
        if target.removed:
            job.cancel(f"scan target {target.name!r} was removed", now, RUNNER_ACTOR)
            self.commit(job.org, {"id": str(job.id)}, None, job)
            return None
        attempt = job.start(now, RUNNER_ACTOR)
        self.commit(job.org, {"id": str(job.id), "attempt": attempt}, None, job)
        return JobRun(
            job_id=job.id,
            org=job.org,
            project_id=job.project_id,
            target_name=job.target_name,
            scanner=job.scanner,
            kind=job.kind,
            location=job.location,
            rules=job.rules,
            branch=job.branch,
            timeout_seconds=job.timeout_seconds,
            attempt=attempt,
        )

    def ingest_job_report(
        self, job_id: UUID, report: Report, digest: str, size: int
    ) -> CommandResult:
        """Submit a job's report through the same ingestion as HTTP, at most once per job.

        The scan's scope is the job's target (name, branch) and it is a full scan: findings of
        that scope it no longer reports become fixed.
        """
        job = self.load(ScanJob, job_id, f"scan job {job_id}")
        meta = ScanMeta(digest=digest, size=size, target=job.target_name, branch=job.branch)
        idem = Idempotency(_job_key(job.id), request_digest("scanJob", str(job.id)))
        principal = runner_principal(job.org)
        return self.submit_scan(principal, UUID(job.project_id), report, meta, idem, job.org)

    def job_ingested(self, job_id: UUID) -> dict[str, Any] | None:
        """The scan summary if this job's report was already ingested (a runner stopped after)."""
        job = self.load(ScanJob, job_id, f"scan job {job_id}")
        record = self.idempotency_record(job.org, _job_key(job.id))
        return dict(record.response) if record is not None else None

    def job_succeeded(
        self, job_id: UUID, summary: dict[str, Any], tool_version: str | None = None
    ) -> CommandResult:
        """Record the scan a job produced (its id and counts, from the ingestion's answer)."""
        job = self.load(ScanJob, job_id, f"scan job {job_id}")
        job.succeed(
            scan_id=str(summary["scan_id"]),
            counts={str(k): int(v) for k, v in dict(summary.get("counts") or {}).items()},
            tool_version=tool_version,
            digest=summary.get("digest"),
            now=self.clock(),
            actor=RUNNER_ACTOR,
        )
        ids = {"id": str(job.id), "status": job.status, "scan_id": job.scan_id}
        return self.commit(job.org, ids, None, job)

    def job_failed(
        self,
        job_id: UUID,
        reason: str,
        *,
        backoff_base: float,
        permanent: bool = False,
    ) -> CommandResult:
        """Record a failed attempt; another is scheduled unless it was the last or permanent."""
        job = self.load(ScanJob, job_id, f"scan job {job_id}")
        job.fail(reason, self.clock(), RUNNER_ACTOR, backoff_base=backoff_base, permanent=permanent)
        ids = {"id": str(job.id), "status": job.status, "retry_at": job.next_run_at}
        return self.commit(job.org, ids, None, job)


def _target_for(
    host: Kernel, principal: Principal, target_id: UUID, action: Action, org: str | None = None
) -> ScanTarget:
    return host.owned(principal, ScanTarget, target_id, f"scan target {target_id}", action, org=org)
