"""The RiskException aggregate: an accepted risk (a gate exception) with a mandatory expiry.

It covers findings of a project by id, by rule or by CWE, in one environment or all; it
counts only once approved by someone other than its requester, and only until it expires,
is revoked or is rejected. Expiry is a command issued by the scheduler.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.domain import event

from domain.base import PearlAggregate
from domain.errors import Conflict, Forbidden


class RiskException(PearlAggregate):
    @event("Requested")
    def __init__(
        self,
        org: str,
        project_id: str,
        environment: str | None,
        finding_ids: list[str],
        rule_id: str | None,
        cwe: str | None,
        justification: str,
        compensating_controls: list[str],
        requested_at: str,
        expires_at: str,
        actor: str,
    ) -> None:
        self.org = org
        self.project_id = project_id
        self.environment = environment
        self.finding_ids = list(finding_ids)
        self.rule_id = rule_id
        self.cwe = cwe
        self.justification = justification
        self.compensating_controls = list(compensating_controls)
        self.requested_at = requested_at
        self.expires_at = expires_at
        self.requested_by = actor
        self.status = "requested"
        self.approved_by: str | None = None
        self.decided_at: str | None = None
        self.reason: str | None = None

    def expired_at(self, now: datetime) -> bool:
        return datetime.fromisoformat(self.expires_at) <= now

    def scope(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "finding_ids": list(self.finding_ids),
            "rule_id": self.rule_id,
            "cwe": self.cwe,
        }

    def approve(self, now: datetime, actor: str) -> None:
        if self.status != "requested":
            raise Conflict(f"exception {self.id} is {self.status}")
        if actor == self.requested_by:
            raise Forbidden("an exception cannot be approved by its requester")
        if self.expired_at(now):
            raise Conflict(f"exception {self.id} expired at {self.expires_at}")
        self._approved(at=now.isoformat(), actor=actor)

    @event("Approved")
    def _approved(self, at: str, actor: str) -> None:
        self.status = "active"
        self.approved_by = actor
        self.decided_at = at

    def reject(self, reason: str, now: datetime, actor: str) -> None:
        if self.status != "requested":
            raise Conflict(f"exception {self.id} is {self.status}")
        if actor == self.requested_by:
            raise Forbidden("an exception cannot be decided by its requester")
        self._rejected(reason=reason, at=now.isoformat(), actor=actor)

    @event("Rejected")
    def _rejected(self, reason: str, at: str, actor: str) -> None:
        self.status = "rejected"
        self.reason = reason
        self.decided_at = at

    def revoke(self, reason: str, now: datetime, actor: str) -> None:
        if self.status not in {"requested", "active"}:
            raise Conflict(f"exception {self.id} is {self.status}")
        self._revoked(reason=reason, at=now.isoformat(), actor=actor)

    @event("Revoked")
    def _revoked(self, reason: str, at: str, actor: str) -> None:
        self.status = "revoked"
        self.reason = reason

    def expire(self, now: datetime, actor: str) -> bool:
        """The scheduler's command; False when it is not due (or no longer open)."""
        if self.status not in {"requested", "active"} or not self.expired_at(now):
            return False
        self._expired(at=now.isoformat(), actor=actor)
        return True

    @event("Expired")
    def _expired(self, at: str, actor: str) -> None:
        self.status = "expired"
