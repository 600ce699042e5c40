"""The Promotion aggregate: a request to move one version into the next environment.

It records every gate evaluation of that request (`GateEvaluated`, each with its decision id,
per-rule results, policy versions, inputs digest and the store position its inputs were read
at), the approval requests opened for it, and how it ended: promoted or rejected.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id
from domain.errors import Conflict

OPEN = frozenset({"pending", "passed", "failed", "awaiting_approval"})


def decision_id(promotion_id: UUID | str, evaluation: int) -> UUID:
    """The id of a promotion's n-th gate evaluation (1-based)."""
    return stable_id("decision", str(promotion_id), str(evaluation))


class Promotion(PearlAggregate):
    @event("Requested")
    def __init__(
        self,
        org: str,
        project_id: str,
        release: str,
        commit: str,
        version_digest: str,
        from_environment: str | None,
        to_environment: str,
        author: str | None,
        reason: str,
        requested_at: str,
        actor: str,
    ) -> None:
        self.org = org
        self.project_id = project_id
        self.release = release
        self.commit = commit
        self.version_digest = version_digest
        self.from_environment = from_environment
        self.to_environment = to_environment
        self.author = author
        self.reason = reason
        self.requested_at = requested_at
        self.requested_by = actor
        self.status = "pending"
        self.evaluations: list[dict[str, Any]] = []
        self.approval_requests: list[str] = []
        self.last_trigger = 0
        self.closed_at: str | None = None
        self.close_reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def latest(self) -> dict[str, Any] | None:
        return self.evaluations[-1] if self.evaluations else None

    @property
    def needs_human_approval(self) -> bool:
        """The latest gate has an approvals rule that applied (agents never complete those)."""
        latest = self.latest or {}
        return any(
            r.get("kind") == "approvals" and r.get("status") != "not_applicable"
            for r in latest.get("rules", [])
        )

    def evaluation(self, decision: UUID | str) -> dict[str, Any] | None:
        for item in self.evaluations:
            if item["decision_id"] == str(decision):
                return item
        return None

    def record_evaluation(
        self,
        *,
        result: str,
        rules: list[dict[str, Any]],
        inputs_digest: str,
        evaluated_at: str,
        as_of_position: int,
        policy: dict[str, Any],
        trigger: str,
        trigger_position: int,
        actor: str,
    ) -> str:
        """Record a gate evaluation; returns its decision id."""
        if not self.is_open:
            raise Conflict(f"promotion {self.id} is {self.status}; it is not evaluated any more")
        decision = str(decision_id(self.id, len(self.evaluations) + 1))
        self._gate_evaluated(
            decision_id=decision,
            result=result,
            rules=rules,
            inputs_digest=inputs_digest,
            evaluated_at=evaluated_at,
            as_of_position=as_of_position,
            policy=policy,
            trigger=trigger,
            trigger_position=trigger_position,
            actor=actor,
        )
        return decision

    @event("GateEvaluated")
    def _gate_evaluated(
        self,
        decision_id: str,
        result: str,
        rules: list[dict[str, Any]],
        inputs_digest: str,
        evaluated_at: str,
        as_of_position: int,
        policy: dict[str, Any],
        trigger: str,
        trigger_position: int,
        actor: str,
    ) -> None:
        self.evaluations.append(
            {
                "decision_id": decision_id,
                "result": result,
                "rules": rules,
                "inputs_digest": inputs_digest,
                "evaluated_at": evaluated_at,
                "as_of_position": as_of_position,
                "policy": policy,
                "trigger": trigger,
            }
        )
        self.status = result
        self.last_trigger = max(self.last_trigger, trigger_position)

    def open_approval_request(self, request_id: str, actor: str) -> None:
        if not self.is_open:
            raise Conflict(f"promotion {self.id} is {self.status}")
        self._approval_requested(request_id=request_id, actor=actor)

    @event("ApprovalRequested")
    def _approval_requested(self, request_id: str, actor: str) -> None:
        self.approval_requests = [*self.approval_requests, request_id]

    def promote(self, at: str, actor: str) -> None:
        if self.status != "passed":
            latest = self.latest
            why = f"its gate is {self.status}" if latest else "its gate was not evaluated yet"
            raise Conflict(f"promotion {self.id} cannot be completed: {why}")
        self._promoted(at=at, actor=actor)

    @event("Promoted")
    def _promoted(self, at: str, actor: str) -> None:
        self.status = "promoted"
        self.closed_at = at

    def reject(self, reason: str, at: str, actor: str) -> None:
        if not self.is_open:
            raise Conflict(f"promotion {self.id} is already {self.status}")
        self._rejected(reason=reason, at=at, actor=actor)

    @event("Rejected")
    def _rejected(self, reason: str, at: str, actor: str) -> None:
        self.status = "rejected"
        self.closed_at = at
        self.close_reason = reason
