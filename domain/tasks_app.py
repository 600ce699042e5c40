"""Task packet commands (a mixin of PearlApp): cut, claim, heartbeat, complete, release, verify.

Every refusal of these commands (no autonomy, a guard rail, a lease not held) is recorded as
an audit event here, once, whichever adapter (HTTP, NATS, MCP) the command came through.
"""

from __future__ import annotations

from uuid import UUID

from contracts.tasks import ClaimTask, CompleteTask, CreateTasks, ReleaseTask, TaskHeartbeat
from domain.authz import Action, Principal
from domain.errors import ConcurrencyConflict, InvalidInput, LeaseConflict, NotFound
from domain.finding import Finding, finding_id
from domain.kernel import CommandResult, Idempotency, Kernel
from domain.remediation import Target, plan_packets
from domain.scan_report import ScanReport
from domain.task_packet import TaskPacket, task_id


class TaskCommands(Kernel):
    def create_tasks(
        self,
        principal: Principal,
        project_id: UUID,
        cmd: CreateTasks,
        candidates: list[UUID],
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        """Cut packets from the named findings, or from `candidates` (open findings in no
        unfinished packet, from the read model); each packet is re-derived from the events."""
        with self.audited(principal, Action.TASK_CREATE, f"project/{project_id}/tasks"):
            project = self.owned_project(principal, project_id, Action.TASK_CREATE, org=org)
        if (replay := self.replayed(project.org, idem)) is not None:
            return replay
        pid = str(project.id)
        named = [UUID(i) for i in cmd.finding_ids]
        findings = self.load_many(Finding, named or candidates)
        usable = [
            f
            for f in findings.values()
            if f.project_id == pid
            and f.is_open
            and (not cmd.severities or f.severity in cmd.severities)
        ]
        if named:
            bad = sorted({str(i) for i in named} - {str(f.id) for f in usable})
            if bad:
                raise InvalidInput(f"not open findings of this project: {', '.join(bad[:20])}")
        now = self.clock()
        plans = plan_packets(
            [Target.of(f) for f in usable],
            cmd.group_by,
            cmd.allowed_paths,
            cmd.max_changed_lines,
            now,
            cmd.limit,
        )
        existing_ids = [task_id(pid, p.key) for p in plans]
        existing = self.load_many(TaskPacket, existing_ids)
        created: list[TaskPacket] = []
        changed: list[TaskPacket] = []
        for plan, tid in zip(plans, existing_ids, strict=True):
            known = existing.get(tid)
            if known is None:
                created.append(
                    TaskPacket.cut(project.org, pid, plan, now.isoformat(), principal.actor)
                )
            elif known.status == "verified":
                known.regress(
                    [t.fingerprint for t in plan.targets], now.isoformat(), principal.actor
                )
                changed.append(known)
        ids = {
            "project_id": pid,
            "created": [str(p.id) for p in created],
            "existing": [str(t) for t in existing_ids if t in existing],
        }
        return self.commit(project.org, ids, idem, *created, *changed)

    def get_task(
        self, principal: Principal, tid: UUID, project_id: UUID | None = None
    ) -> TaskPacket:
        return _task_for(self, principal, tid, Action.TASK_READ, None, project_id)

    def claim_task(
        self,
        principal: Principal,
        tid: UUID,
        cmd: ClaimTask,
        idem: Idempotency | None = None,
        org: str | None = None,
        project_id: UUID | None = None,
    ) -> CommandResult:
        """Take the packet with a lease; of many racing claims exactly one is saved."""
        with self.audited(principal, Action.TASK_CLAIM, f"task/{tid}"):
            task = _task_for(self, principal, tid, Action.TASK_CLAIM, org, project_id)
            if (replay := self.replayed(task.org, idem)) is not None:
                return replay
            task.claim(principal.actor, self.clock(), cmd.ttl_seconds)
            ids = {"id": str(tid), "holder": task.holder, "lease_expires_at": task.lease_expires_at}
            try:
                return self.commit(task.org, ids, idem, task)
            except ConcurrencyConflict:
                raise LeaseConflict(f"task {tid} was claimed by someone else first") from None

    def heartbeat_task(
        self,
        principal: Principal,
        tid: UUID,
        cmd: TaskHeartbeat,
        org: str | None = None,
        project_id: UUID | None = None,
        *,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        with self.audited(principal, Action.TASK_CLAIM, f"task/{tid}/heartbeat"):
            task = _task_for(self, principal, tid, Action.TASK_CLAIM, org, project_id)
            if (replay := self.replayed(task.org, idem)) is not None:
                return replay
            task.heartbeat(principal.actor, self.clock(), cmd.ttl_seconds)
            ids = {"id": str(tid), "lease_expires_at": task.lease_expires_at}
            return self.commit(task.org, ids, idem, task)

    def complete_task(
        self,
        principal: Principal,
        tid: UUID,
        cmd: CompleteTask,
        idem: Idempotency | None = None,
        org: str | None = None,
        project_id: UUID | None = None,
    ) -> CommandResult:
        """Record the holder's outcome, within the packet's guard rails; verification follows
        from the next full scan."""
        with self.audited(principal, Action.TASK_COMPLETE, f"task/{tid}/complete"):
            task = _task_for(self, principal, tid, Action.TASK_COMPLETE, org, project_id)
            if (replay := self.replayed(task.org, idem)) is not None:
                return replay
            outcome = {
                "branch": cmd.branch,
                "commit": cmd.commit,
                "pr_url": cmd.pr_url,
                "summary": cmd.summary,
            }
            task.complete(
                principal.actor, self.clock(), outcome, list(cmd.changed_files), cmd.changed_lines
            )
            return self.commit(task.org, {"id": str(tid), "status": task.status}, idem, task)

    def release_task(
        self,
        principal: Principal,
        tid: UUID,
        cmd: ReleaseTask,
        org: str | None = None,
        project_id: UUID | None = None,
        *,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        with self.audited(principal, Action.TASK_CLAIM, f"task/{tid}/release"):
            task = _task_for(self, principal, tid, Action.TASK_CLAIM, org, project_id)
            if (replay := self.replayed(task.org, idem)) is not None:
                return replay
            task.release(principal.actor, self.clock(), cmd.reason, cmd.failed)
            return self.commit(task.org, {"id": str(tid), "status": task.status}, idem, task)

    # --- the scheduler's and the verifier's commands ----------------------------------------

    def expire_task_lease(self, tid: UUID, paused_agent: str | None = None) -> bool:
        """Take back a packet whose lease ran out (or whose holder is paused); False if not due."""
        task = self.load(TaskPacket, tid, f"task {tid}")
        now = self.clock()
        if paused_agent is not None:
            done = task.revoke_lease(paused_agent, now, "agent paused", "system:scheduler")
        else:
            done = task.expire_lease(now, "system:scheduler")
        if not done:
            return False
        try:
            self.commit(task.org, {"id": str(tid)}, None, task)
        except ConcurrencyConflict:  # renewed or released meanwhile: the next tick re-checks
            return False
        return True

    def verify_tasks(self, scan_id: UUID, candidates: list[UUID]) -> dict[str, int]:
        """Judge completed packets of the scan's project by a full scan submitted after them."""
        scan = self.load(ScanReport, scan_id, f"scan {scan_id}")
        counts = {"verified": 0, "reopened": 0}
        if not scan.full:
            return counts
        packets = [
            p
            for p in self.load_many(TaskPacket, candidates).values()
            if p.project_id == scan.project_id and p.status == "completed"
        ]
        ids = [finding_id(scan.project_id, t["fingerprint"]) for p in packets for t in p.targets]
        findings = {f.fingerprint: f for f in self.load_many(Finding, ids).values()}
        judged = []
        for packet in packets:
            states = {
                t["fingerprint"]: _state(findings.get(t["fingerprint"])) for t in packet.targets
            }
            verdict = packet.check_scan(str(scan_id), scan.submitted_at, scan.tool, states)
            if verdict is not None:
                counts[verdict] += 1
                judged.append(packet)
        if judged:
            try:
                self.commit(scan.org, counts, None, *judged)
            except ConcurrencyConflict:  # a packet changed meanwhile: redelivery re-judges
                return {"verified": 0, "reopened": 0}
        return counts


def _task_for(
    host: Kernel,
    principal: Principal,
    tid: UUID,
    action: Action,
    org: str | None = None,
    project_id: UUID | None = None,
) -> TaskPacket:
    """The packet if the caller may act on it (in `org` and `project_id`, when named)."""
    task = host.owned(principal, TaskPacket, tid, f"task {tid}", action, org=org)
    if project_id is not None and task.project_id != str(project_id):
        raise NotFound(f"task {tid} not found in project {project_id}")
    return task


def _state(finding: Finding | None) -> tuple[str, list[str]]:
    if finding is None:
        return "fixed", []
    return finding.status, list(finding.sources)
