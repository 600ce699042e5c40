"""Governance commands, mixed into the PeaRL Application: profiles, policies, versions, test
results, promotions and their gate, approvals, exceptions, rollbacks, and decision replay.

Gate evaluation is a pure function of a policy and `GateInputs`. The live inputs are read by
the service layer from a consistent read-model snapshot at store position P; `record_gate`
evaluates them against the policy in force and records a `GateEvaluated` event that names P,
the policy versions and the inputs digest. `replay_decision` rebuilds the inputs from the
event store as of P and evaluates the recorded policy versions again: same result, same
digest, or the decision was not what its history says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar
from uuid import UUID

import msgspec
from eventsourcing.domain import Aggregate

from contracts.governance import (
    CommentApproval,
    DecideApproval,
    DecideException,
    RegisterVersion,
    RequestException,
    RequestPromotion,
    SetPolicy,
    SetProfile,
    SubmitTestResults,
)
from contracts.policy import AnyRule, Approvals, PolicyDocument
from domain.approval import ApprovalRequest, approval_request_id
from domain.authz import Action, Principal, authorize
from domain.environment import DeployEnvironment, environment_id
from domain.errors import AutonomyExceeded, Conflict, InvalidInput, NotFound
from domain.finding import Finding
from domain.gate import applies, evaluate
from domain.gate.facts import (
    active_exception_facts,
    approval_facts,
    open_finding_facts,
    previous_of,
    profile_of,
    scan_facts,
    test_facts,
)
from domain.gate.inputs import Decision, GateInputs, utc_iso
from domain.gate_policy import GatePolicy, gate_policy_id
from domain.kernel import CommandResult, Idempotency, Kernel
from domain.org import Org, org_id
from domain.policy import (
    PolicyInvalid,
    effective_exception_max_days,
    effective_rules,
    parse_policy,
    policy_as_dict,
    policy_digest,
    tightening_errors,
)
from domain.project import Project
from domain.promotion import Promotion
from domain.release_version import ReleaseVersion, release_version_id, version_digest
from domain.risk_exception import RiskException
from domain.scan_report import ScanReport
from domain.test_run import TestRun

G = TypeVar("G", Promotion, ApprovalRequest, RiskException)
A = TypeVar("A", bound=Aggregate)
GATEKEEPER = "system:gatekeeper"
SCHEDULER = "system:scheduler"
Source = Literal["baseline", "project"]


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """The rules in force for one environment of a project, and which versions they came from."""

    rules: list[tuple[Source, AnyRule]]
    #: source ("baseline", "project") → the policy version used (document, digest, author…)
    entries: dict[str, dict[str, Any] | None]
    exception_max_days: int

    @property
    def versions(self) -> dict[str, Any]:
        """What a decision records of the policy: each source's version number and digest."""
        return {
            source: entry and {"version": entry["version"], "digest": entry["digest"]}
            for source, entry in self.entries.items()
        }

    def approvals_rule(self, profile: dict[str, Any]) -> Approvals | None:
        for _, rule in self.rules:
            if isinstance(rule, Approvals) and applies(rule.when, profile_of(profile)):
                return rule
        return None


@dataclass(frozen=True, slots=True)
class GateOutcome:
    result: CommandResult | None
    decision: Decision | None
    decision_id: str | None


@dataclass(frozen=True, slots=True)
class ReplayIds:
    """Which aggregates of the project to rebuild (from the scope index; all kinds at once)."""

    findings: list[UUID]
    exceptions: list[UUID]
    scans: list[UUID]
    tests: list[UUID]


def validate_policy(data: Any) -> PolicyDocument:
    """A policy from its JSON form; every error reported with its location (PolicyInvalid)."""
    return parse_policy(msgspec.json.encode(data), source="policy")


class GovernanceCommands(Kernel):
    """The governance capability of the PeaRL Application."""

    # --- project profile --------------------------------------------------------------------

    def set_profile(
        self,
        principal: Principal,
        project_id: UUID,
        cmd: SetProfile,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        project = self.owned_project(principal, project_id, Action.PROFILE_SET, org=org)
        if (replay := self.replayed(project.org, idem)) is not None:
            return replay
        profile = msgspec.to_builtins(cmd)
        project.set_profile(profile, principal.actor)
        ids = {"id": str(project.id), "profile": profile}
        return self.commit(project.org, ids, idem, project)

    # --- policies ---------------------------------------------------------------------------

    def set_policy(
        self,
        principal: Principal,
        org: str,
        project_id: UUID | None,
        environment: str,
        cmd: SetPolicy,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        """A new version of a baseline (no project) or project policy; the same one is a no-op."""
        pid: str | None = None
        if project_id is None:
            authorize(principal, Action.POLICY_MANAGE, org=org)
            self.load(Org, org_id(org), f"org {org!r}")
        else:
            project = self.owned_project(principal, project_id, Action.POLICY_MANAGE, org=org)
            if environment not in project.environments:
                raise InvalidInput(
                    f"environment {environment!r} is not one of {project.environments}"
                )
            pid = str(project.id)
        if (replay := self.replayed(org, idem)) is not None:
            return replay
        document = validate_policy(cmd.policy)
        if pid is not None:
            baseline = _document(_policy_entry(self, org, None, environment))
            if baseline is not None and (errors := tightening_errors(baseline, document)):
                raise PolicyInvalid(errors)
        policy_id = gate_policy_id(org, pid, environment)
        policy = self.find(GatePolicy, policy_id) or GatePolicy(
            org=org, project_id=pid, environment=environment, actor=principal.actor
        )
        changed = policy.revise(
            policy_as_dict(document),
            policy_digest(document),
            cmd.reason,
            self.clock().isoformat(),
            principal.actor,
        )
        current = policy.current
        assert current is not None
        ids = {
            "id": str(policy.id),
            "org": org,
            "project_id": pid,
            "environment": environment,
            "version": current["version"],
            "digest": current["digest"],
            "changed": changed,
        }
        return self.commit(org, ids, idem, policy)

    def get_policy(
        self, principal: Principal, org: str, project_id: UUID | None, environment: str
    ) -> GatePolicy:
        if project_id is None:
            authorize(principal, Action.POLICY_READ, org)
        else:
            org = self.owned_project(principal, project_id, Action.POLICY_READ).org
        pid = str(project_id) if project_id else None
        try:
            return self.load(GatePolicy, gate_policy_id(org, pid, environment), "policy")
        except NotFound:
            where = "the org baseline" if pid is None else "the project"
            raise NotFound(f"{where} has no policy for {environment!r}") from None

    def policy_in_force(
        self, principal: Principal, project_id: UUID, environment: str
    ) -> EffectivePolicy:
        """The baseline and project policy versions in force for an environment, merged."""
        project = self.owned_project(principal, project_id, Action.POLICY_READ)
        if environment not in project.environments:
            raise NotFound(f"environment {environment!r} not found")
        return effective_policy(self, project, environment)

    # --- versions and test results ----------------------------------------------------------

    def register_version(
        self,
        principal: Principal,
        project_id: UUID,
        cmd: RegisterVersion,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        """Register a build; the same build again is a no-op, another build under its label 409."""
        project = self.owned_project(principal, project_id, Action.VERSION_REGISTER, org=org)
        if (replay := self.replayed(project.org, idem)) is not None:
            return replay
        pid = str(project.id)
        vid = release_version_id(pid, cmd.version)
        digest = version_digest(pid, cmd.version, cmd.commit, cmd.artifact_digest)
        ids = {"id": str(vid), "project_id": pid, "version": cmd.version, "digest": digest}
        if (existing := self.find(ReleaseVersion, vid)) is not None:
            if not existing.same_build(cmd.commit, cmd.artifact_digest, cmd.author):
                raise Conflict(f"version {cmd.version!r} is already registered for another build")
            return self.commit(project.org, ids, idem)
        version = ReleaseVersion(
            org=project.org,
            project_id=pid,
            release=cmd.version,
            commit=cmd.commit,
            artifact_digest=cmd.artifact_digest,
            digest=digest,
            author=cmd.author,
            registered_at=self.clock().isoformat(),
            actor=principal.actor,
        )
        return self.commit(project.org, ids, idem, version)

    def submit_test_results(
        self,
        principal: Principal,
        project_id: UUID,
        cmd: SubmitTestResults,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        project = self.owned_project(principal, project_id, Action.TESTS_SUBMIT, org=org)
        if (replay := self.replayed(project.org, idem)) is not None:
            return replay
        if cmd.passed + cmd.failed + cmd.skipped == 0:
            raise InvalidInput("test results need at least one test")
        run = TestRun(
            org=project.org,
            project_id=str(project.id),
            commit=cmd.commit,
            suite=cmd.suite,
            passed=cmd.passed,
            failed=cmd.failed,
            skipped=cmd.skipped,
            coverage=cmd.coverage,
            submitted_at=self.clock().isoformat(),
            actor=principal.actor,
        )
        ids = {"id": str(run.id), "project_id": str(project.id), "commit": cmd.commit}
        return self.commit(project.org, ids, idem, run)

    # --- promotions -------------------------------------------------------------------------

    def request_promotion(
        self,
        principal: Principal,
        project_id: UUID,
        cmd: RequestPromotion,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        """Open a promotion of a registered version into the next environment (gate pending)."""
        project = self.owned_project(
            principal, project_id, Action.PROMOTION_REQUEST, org=org, environment=cmd.to
        )
        if (replay := self.replayed(project.org, idem)) is not None:
            return replay
        pid = str(project.id)
        source = project.previous_environment(cmd.to)
        if cmd.from_ is not None and cmd.from_ != source:
            expected = f"from {source!r}" if source else "as the first environment"
            raise InvalidInput(
                f"{cmd.to!r} can only be promoted to {expected}, not from {cmd.from_!r}"
            )
        try:
            version = self.load(ReleaseVersion, release_version_id(pid, cmd.version), "version")
        except NotFound:
            raise InvalidInput(
                f"unknown version {cmd.version!r}: register it before promoting it"
            ) from None
        if source is not None:
            before = _environment(self, pid, source)
            if before is None or before.live_since(version.digest) is None:
                raise Conflict(f"version {cmd.version!r} is not live in {source!r}")
        env_id = environment_id(pid, cmd.to)
        target = _environment(self, pid, cmd.to) or DeployEnvironment(
            org=project.org, project_id=pid, name=cmd.to, actor=principal.actor
        )
        if target.live_since(version.digest) is not None:
            raise Conflict(f"version {cmd.version!r} is already live in {cmd.to!r}")
        now = self.clock()
        promotion = Promotion(
            org=project.org,
            project_id=pid,
            release=version.release,
            commit=version.commit,
            version_digest=version.digest,
            from_environment=source,
            to_environment=cmd.to,
            author=version.author,
            reason=cmd.reason,
            requested_at=now.isoformat(),
            actor=principal.actor,
        )
        target.start_promotion(str(promotion.id), principal.actor)
        assert target.id == env_id
        changed: list[Any] = [promotion, target]
        policy = effective_policy(self, project, cmd.to)
        rule = policy.approvals_rule(project.profile)
        if rule is not None:
            changed.append(_open_approval(promotion, rule, now, principal.actor))
        ids = {
            "id": str(promotion.id),
            "project_id": pid,
            "version": version.release,
            "from": source,
            "to": cmd.to,
            "status": promotion.status,
            "approval_request_id": promotion.approval_requests[-1]
            if promotion.approval_requests
            else None,
        }
        return self.commit(project.org, ids, idem, *changed)

    def get_promotion(self, principal: Principal, promotion_id: UUID) -> Promotion:
        return _visible(self, principal, Promotion, promotion_id, Action.PROJECT_READ)

    def promotion_for_gate(self, promotion_id: UUID) -> Promotion:
        """The promotion, for the gate service (callers were authorized already)."""
        return self.load(Promotion, promotion_id, f"promotion {promotion_id}", shallow=True)

    def authorize_evaluation(self, principal: Principal, promotion_id: UUID) -> Promotion:
        return _visible(self, principal, Promotion, promotion_id, Action.PROMOTION_REQUEST)

    def record_gate(
        self,
        promotion_id: UUID,
        inputs: GateInputs,
        as_of_position: int,
        trigger: str,
        trigger_position: int,
        actor: str = GATEKEEPER,
        idem: Idempotency | None = None,
    ) -> GateOutcome:
        """Evaluate the policy in force on inputs read at `as_of_position`, and record it.

        An automatic re-evaluation whose trigger was already covered by an earlier evaluation
        of this promotion, or a promotion that is closed, records nothing.
        """
        promotion = self.load(Promotion, promotion_id, f"promotion {promotion_id}", shallow=True)
        if not promotion.is_open:
            return GateOutcome(None, None, None)
        if trigger != "manual" and trigger_position <= promotion.last_trigger:
            return GateOutcome(None, None, None)
        project = self.load(Project, UUID(promotion.project_id), "project", shallow=True)
        policy = effective_policy(self, project, promotion.to_environment)
        decision = evaluate(policy.rules, inputs)
        decision_id = promotion.record_evaluation(
            result=decision.result,
            rules=msgspec.to_builtins(decision.rules),
            inputs_digest=decision.inputs_digest,
            evaluated_at=decision.evaluated_at,
            as_of_position=as_of_position,
            policy=policy.versions,
            trigger=trigger,
            trigger_position=max(trigger_position, promotion.last_trigger),
            actor=actor,
        )
        ids = {
            "id": str(promotion.id),
            "decision_id": decision_id,
            "result": decision.result,
            "inputs_digest": decision.inputs_digest,
        }
        result = self.commit(promotion.org, ids, idem, promotion)
        return GateOutcome(result, decision, decision_id)

    def promote(
        self, principal: Principal, promotion_id: UUID, idem: Idempotency | None = None
    ) -> CommandResult:
        """Complete a promotion whose latest gate evaluation passed: the version goes live."""
        promotion = self.load(Promotion, promotion_id, f"promotion {promotion_id}")
        authorize(
            principal,
            Action.PROMOTION_COMPLETE,
            promotion.org,
            promotion.to_environment,
            f"promotion {promotion_id}",
        )
        if principal.kind == "agent" and promotion.needs_human_approval:
            raise AutonomyExceeded(
                f"promotion {promotion_id}: its gate has a human approval rule, so a person "
                "completes it"
            )
        if (replay := self.replayed(promotion.org, idem)) is not None:
            return replay
        at = self.clock().isoformat()
        promotion.promote(at, principal.actor)
        env = _environment(self, promotion.project_id, promotion.to_environment)
        assert env is not None
        env.promote(
            str(promotion.id),
            promotion.release,
            promotion.version_digest,
            promotion.commit,
            at,
            principal.actor,
        )
        ids = {
            "id": str(promotion.id),
            "status": promotion.status,
            "environment": promotion.to_environment,
            "version": promotion.release,
        }
        return self.commit(promotion.org, ids, idem, promotion, env)

    def reject_promotion(
        self,
        principal: Principal,
        promotion_id: UUID,
        reason: str,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        """Reject (or, by its requester, withdraw) an open promotion; its approvals are voided."""
        promotion = self.load(Promotion, promotion_id, f"promotion {promotion_id}")
        own = principal.actor == promotion.requested_by
        authorize(
            principal,
            Action.PROMOTION_REQUEST if own else Action.PROMOTION_REJECT,
            promotion.org,
            resource=f"promotion {promotion_id}",
        )
        if (replay := self.replayed(promotion.org, idem)) is not None:
            return replay
        at = self.clock().isoformat()
        promotion.reject(reason, at, principal.actor)
        env = _environment(self, promotion.project_id, promotion.to_environment)
        assert env is not None
        env.end_promotion(str(promotion.id), "rejected", principal.actor)
        voided = [
            r
            for r in self.load_many(
                ApprovalRequest, [UUID(i) for i in promotion.approval_requests]
            ).values()
            if r.void(f"promotion rejected: {reason}", at, principal.actor)
        ]
        ids = {"id": str(promotion.id), "status": promotion.status}
        return self.commit(promotion.org, ids, idem, promotion, env, *voided)

    def rollback(
        self,
        principal: Principal,
        project_id: UUID,
        environment: str,
        reason: str,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        """Put the previous good version back live; the current one counts as a failed release."""
        project = self.owned_project(principal, project_id, Action.ROLLBACK)
        if environment not in project.environments:
            raise NotFound(f"environment {environment!r} not found")
        if (replay := self.replayed(project.org, idem)) is not None:
            return replay
        env = _environment(self, str(project.id), environment)
        if env is None:
            raise Conflict(f"nothing was ever promoted to {environment!r}")
        target = env.rollback(reason, self.clock().isoformat(), principal.actor)
        ids = {
            "project_id": str(project.id),
            "environment": environment,
            "version": target["release"],
        }
        return self.commit(project.org, ids, idem, env)

    def get_environment(
        self, principal: Principal, project_id: UUID, environment: str
    ) -> DeployEnvironment | None:
        project = self.owned_project(principal, project_id, Action.PROJECT_READ)
        if environment not in project.environments:
            raise NotFound(f"environment {environment!r} not found")
        return _environment(self, str(project.id), environment)

    # --- approvals --------------------------------------------------------------------------

    def request_approval(
        self, principal: Principal, promotion_id: UUID, idem: Idempotency | None = None
    ) -> CommandResult:
        """Ask again after a request expired or was rejected (same version, fresh expiry)."""
        promotion = _visible(self, principal, Promotion, promotion_id, Action.PROMOTION_REQUEST)
        if (replay := self.replayed(promotion.org, idem)) is not None:
            return replay
        if not promotion.is_open:
            raise Conflict(f"promotion {promotion.id} is {promotion.status}")
        previous = self.load_many(
            ApprovalRequest, [UUID(i) for i in promotion.approval_requests]
        ).values()
        live = [r for r in previous if r.status in {"pending", "approved"}]
        if live:
            raise Conflict(f"approval request {live[0].id} is still {live[0].status}")
        project = self.load(Project, UUID(promotion.project_id), "project")
        rule = effective_policy(self, project, promotion.to_environment).approvals_rule(
            project.profile
        )
        if rule is None:
            raise Conflict(f"the {promotion.to_environment!r} gate requires no approval")
        request = _open_approval(promotion, rule, self.clock(), principal.actor)
        ids = {"id": str(request.id), "promotion_id": str(promotion.id)}
        return self.commit(promotion.org, ids, idem, promotion, request)

    def decide_approval(
        self,
        principal: Principal,
        request_id: UUID,
        cmd: DecideApproval,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        request = _visible(
            self, principal, ApprovalRequest, request_id, Action.APPROVAL_DECIDE, org
        )
        if (replay := self.replayed(request.org, idem)) is not None:
            return replay
        roles = sorted(str(r) for r in principal.roles)
        request.decide(principal.actor, roles, cmd.decision, cmd.reason, self.clock())
        ids = {
            "id": str(request.id),
            "promotion_id": request.promotion_id,
            "status": request.status,
            "approvals": request.approvals,
            "required": request.required_count,
        }
        return self.commit(request.org, ids, idem, request)

    def comment_approval(
        self,
        principal: Principal,
        request_id: UUID,
        cmd: CommentApproval,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        request = _visible(
            self, principal, ApprovalRequest, request_id, Action.APPROVAL_COMMENT, org
        )
        if (replay := self.replayed(request.org, idem)) is not None:
            return replay
        request.comment(cmd.text, self.clock().isoformat(), principal.actor)
        return self.commit(request.org, {"id": str(request.id)}, idem, request)

    def get_approval(self, principal: Principal, request_id: UUID) -> ApprovalRequest:
        return _visible(self, principal, ApprovalRequest, request_id, Action.PROJECT_READ)

    def expire_approval(self, request_id: UUID) -> bool:
        """The scheduler's command: expire a pending request that is past due."""
        return _expire(self, ApprovalRequest, request_id)

    # --- exceptions -------------------------------------------------------------------------

    def request_exception(
        self,
        principal: Principal,
        project_id: UUID,
        cmd: RequestException,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        project = self.owned_project(
            principal, project_id, Action.EXCEPTION_REQUEST, org=org, environment=cmd.environment
        )
        if (replay := self.replayed(project.org, idem)) is not None:
            return replay
        if not (cmd.finding_ids or cmd.rule_id or cmd.cwe):
            raise InvalidInput("an exception covers finding_ids, a rule_id or a cwe")
        if cmd.environment is not None and cmd.environment not in project.environments:
            raise InvalidInput(f"environment {cmd.environment!r} is not one of the project's")
        ids = sorted({str(UUID(i)) for i in cmd.finding_ids})
        found = self.load_many(Finding, [UUID(i) for i in ids])
        missing = [
            i for i in ids if UUID(i) not in found or found[UUID(i)].project_id != str(project.id)
        ]
        if missing:
            raise InvalidInput(f"findings not in this project: {', '.join(missing[:10])}")
        now = self.clock()
        expires = cmd.expires_at
        if expires.tzinfo is None:
            raise InvalidInput("expires_at needs a time zone")
        envs = [cmd.environment] if cmd.environment else project.environments
        max_days = min(effective_policy(self, project, e).exception_max_days for e in envs)
        if expires <= now:
            raise InvalidInput("expires_at must be in the future")
        if expires > now + timedelta(days=max_days):
            raise InvalidInput(f"expires_at may be at most {max_days} days away (policy)")
        exception = RiskException(
            org=project.org,
            project_id=str(project.id),
            environment=cmd.environment,
            finding_ids=ids,
            rule_id=cmd.rule_id,
            cwe=cmd.cwe,
            justification=cmd.justification,
            compensating_controls=list(cmd.compensating_controls),
            requested_at=now.isoformat(),
            expires_at=utc_iso(expires) or "",
            actor=principal.actor,
        )
        result_ids = {"id": str(exception.id), "project_id": str(project.id), "status": "requested"}
        return self.commit(project.org, result_ids, idem, exception)

    def decide_exception(
        self,
        principal: Principal,
        exception_id: UUID,
        cmd: DecideException,
        idem: Idempotency | None = None,
        org: str | None = None,
    ) -> CommandResult:
        exception = _visible(
            self, principal, RiskException, exception_id, Action.EXCEPTION_DECIDE, org
        )
        if (replay := self.replayed(exception.org, idem)) is not None:
            return replay
        if cmd.decision == "approve":
            exception.approve(self.clock(), principal.actor)
        else:
            if not cmd.reason.strip():
                raise InvalidInput("a rejection needs a reason")
            exception.reject(cmd.reason, self.clock(), principal.actor)
        ids = {"id": str(exception.id), "status": exception.status}
        return self.commit(exception.org, ids, idem, exception)

    def revoke_exception(
        self,
        principal: Principal,
        exception_id: UUID,
        reason: str,
        idem: Idempotency | None = None,
    ) -> CommandResult:
        exception = _visible(self, principal, RiskException, exception_id, Action.EXCEPTION_DECIDE)
        if (replay := self.replayed(exception.org, idem)) is not None:
            return replay
        exception.revoke(reason, self.clock(), principal.actor)
        ids = {"id": str(exception.id), "status": exception.status}
        return self.commit(exception.org, ids, idem, exception)

    def expire_exception(self, exception_id: UUID) -> bool:
        """The scheduler's command: an exception past its expiry stops counting."""
        return _expire(self, RiskException, exception_id)

    # --- replay -----------------------------------------------------------------------------

    def replay_decision(
        self, promotion_id: UUID, decision_id: str, ids: ReplayIds
    ) -> dict[str, Any]:
        """Re-run a recorded evaluation from the event store as of its position."""
        current = self.load(Promotion, promotion_id, f"promotion {promotion_id}")
        recorded = current.evaluation(decision_id)
        if recorded is None:
            raise NotFound(f"decision {decision_id} not found")
        position = int(recorded["as_of_position"])
        inputs, project = inputs_from_store(self, current, ids, position, recorded["evaluated_at"])
        policy = effective_policy(self, project, current.to_environment, recorded["policy"])
        decision = evaluate(policy.rules, inputs)
        replayed_rules = msgspec.to_builtins(decision.rules)
        return {
            "promotion_id": str(current.id),
            "decision_id": decision_id,
            "as_of_position": position,
            "evaluated_at": recorded["evaluated_at"],
            "policy": recorded["policy"],
            "recorded": {"result": recorded["result"], "inputs_digest": recorded["inputs_digest"]},
            "replayed": {"result": decision.result, "inputs_digest": decision.inputs_digest},
            "rules_match": replayed_rules == recorded["rules"],
            "matches": decision.result == recorded["result"]
            and decision.inputs_digest == recorded["inputs_digest"]
            and replayed_rules == recorded["rules"],
        }


def inputs_from_store(
    host: Kernel, promotion: Promotion, ids: ReplayIds, position: int | None, now: str
) -> tuple[GateInputs, Project]:
    """A promotion's gate inputs rebuilt from the event store as of `position` (None: now)."""
    at = datetime.fromisoformat(now)
    then = host.load_many(Promotion, [promotion.id], upto=position).get(promotion.id) or promotion
    pid = UUID(promotion.project_id)
    project = host.load_many(Project, [pid], upto=position)[pid]
    findings = host.load_many(Finding, ids.findings, upto=position).values()
    exceptions = host.load_many(RiskException, ids.exceptions, upto=position).values()
    scans = host.load_many(ScanReport, ids.scans, upto=position).values()
    tests = host.load_many(TestRun, ids.tests, upto=position).values()
    requests = host.load_many(
        ApprovalRequest, [UUID(i) for i in then.approval_requests], upto=position
    ).values()
    previous = None
    if promotion.from_environment is not None:
        env_id = environment_id(promotion.project_id, promotion.from_environment)
        env = host.load_many(DeployEnvironment, [env_id], upto=position).get(env_id)
        previous = previous_of(env, promotion.from_environment, promotion.version_digest)
    inputs = build_inputs(
        promotion,
        project.profile,
        now,
        open_finding_facts(f for f in findings if f.project_id == promotion.project_id),
        active_exception_facts(
            (e for e in exceptions if e.project_id == promotion.project_id),
            promotion.to_environment,
            at,
        ),
        scan_facts((s for s in scans if s.project_id == promotion.project_id), promotion.commit),
        test_facts((t for t in tests if t.project_id == promotion.project_id), promotion.commit),
        approval_facts(requests),
        previous,
    )
    return inputs, project


def build_inputs(
    promotion: Promotion,
    profile: dict[str, Any],
    now: str,
    findings: Any,
    exceptions: Any,
    scans: Any,
    tests: Any,
    approvals: Any,
    previous: Any,
) -> GateInputs:
    """The gate inputs of a promotion from its facts (same shape whatever their source)."""
    return GateInputs(
        project_id=promotion.project_id,
        environment=promotion.to_environment,
        from_environment=promotion.from_environment,
        version=promotion.release,
        commit=promotion.commit,
        version_digest=promotion.version_digest,
        requested_by=promotion.requested_by,
        author=promotion.author,
        profile=profile_of(profile),
        now=utc_iso(now) or "",
        findings=tuple(findings),
        exceptions=tuple(exceptions),
        scans=tuple(scans),
        tests=tuple(tests),
        approvals=tuple(approvals),
        previous=previous,
    ).canonical()


def effective_policy(
    host: Kernel, project: Project, environment: str, versions: dict[str, Any] | None = None
) -> EffectivePolicy:
    """Baseline + project policy for an environment: the versions in force, or those named."""
    entries: dict[str, dict[str, Any] | None] = {}
    for source, pid in (("baseline", None), ("project", str(project.id))):
        if versions is None:
            entries[source] = _policy_entry(host, project.org, pid, environment)
        elif wanted := versions.get(source):
            number = int(wanted["version"])
            entries[source] = _policy_entry(host, project.org, pid, environment, number)
        else:
            entries[source] = None
    baseline, own = _document(entries["baseline"]), _document(entries["project"])
    return EffectivePolicy(
        rules=effective_rules(baseline, own),
        entries=entries,
        exception_max_days=effective_exception_max_days(baseline, own),
    )


def _policy_entry(
    host: Kernel, org: str, project_id: str | None, environment: str, version: int | None = None
) -> dict[str, Any] | None:
    """One version of a policy (the one in force when `version` is None); None if none."""
    policy_id = gate_policy_id(org, project_id, environment)
    if (policy := host.find(GatePolicy, policy_id)) is None:
        return None
    return policy.current if version is None else policy.at_version(version)


def _document(entry: dict[str, Any] | None) -> PolicyDocument | None:
    return None if entry is None else msgspec.convert(entry["document"], PolicyDocument)


def _visible(
    host: Kernel,
    principal: Principal,
    cls: type[G],
    aggregate_id: UUID,
    action: Action,
    org: str | None = None,
) -> G:
    """A governance aggregate the principal may act on (see `PearlApp.owned`)."""
    return host.owned(principal, cls, aggregate_id, f"{_name(cls)} {aggregate_id}", action, org=org)


def _expire(host: Kernel, cls: type[ApprovalRequest | RiskException], aggregate_id: UUID) -> bool:
    """The scheduler's expiry command; False when the aggregate says it is not due."""
    aggregate = host.load(cls, aggregate_id, f"{_name(cls)} {aggregate_id}")
    if not aggregate.expire(host.clock(), SCHEDULER):
        return False
    host.commit(aggregate.org, {"id": str(aggregate.id)}, None, aggregate)
    return True


def _name(cls: type) -> str:
    names: dict[type, str] = {ApprovalRequest: "approval request", RiskException: "exception"}
    return names.get(cls, cls.__name__.lower())


def _environment(host: Kernel, project_id: str, name: str) -> DeployEnvironment | None:
    return host.find(DeployEnvironment, environment_id(project_id, name))


def _open_approval(
    promotion: Promotion, rule: Approvals, now: datetime, actor: str
) -> ApprovalRequest:
    number = len(promotion.approval_requests) + 1
    request = ApprovalRequest(
        org=promotion.org,
        project_id=promotion.project_id,
        promotion_id=str(promotion.id),
        number=number,
        environment=promotion.to_environment,
        release=promotion.release,
        version_digest=promotion.version_digest,
        required_count=rule.count,
        roles=list(rule.roles),
        requested_by=promotion.requested_by,
        author=promotion.author,
        requested_at=now.isoformat(),
        expires_at=(now + timedelta(hours=rule.ttl_hours)).isoformat(),
        actor=actor,
    )
    assert request.id == approval_request_id(str(promotion.id), number)
    promotion.open_approval_request(str(request.id), actor)
    return request
