"""The ApprovalRequest aggregate: people deciding whether one exact version may go on.

Separation of duties is enforced here: the requester of the promotion and the author of the
change can never approve, and one person counts once. A request is bound to a version digest
and expires; once expired, voided, rejected or fully approved it takes no more decisions.
Two approvers racing for the last slot both load the same version of the request; only the
first save succeeds (optimistic concurrency), the second finds it approved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id
from domain.errors import Conflict, Forbidden, InvalidInput

DECISIONS = frozenset({"approve", "reject"})


def approval_request_id(promotion_id: str, number: int) -> UUID:
    return stable_id("approval", promotion_id, str(number))


class ApprovalRequest(PearlAggregate):
    @staticmethod
    def create_id(promotion_id: str, number: int, **_: Any) -> UUID:
        return approval_request_id(promotion_id, number)

    @event("Requested")
    def __init__(
        self,
        org: str,
        project_id: str,
        promotion_id: str,
        number: int,
        environment: str,
        release: str,
        version_digest: str,
        required_count: int,
        roles: list[str],
        requested_by: str,
        author: str | None,
        requested_at: str,
        expires_at: str,
        actor: str,
    ) -> None:
        self.org = org
        self.project_id = project_id
        self.promotion_id = promotion_id
        self.environment = environment
        self.release = release
        self.version_digest = version_digest
        self.required_count = required_count
        self.roles = list(roles)
        self.requested_by = requested_by
        self.author = author
        self.requested_at = requested_at
        self.expires_at = expires_at
        self.status = "pending"
        self.decisions: list[dict[str, Any]] = []
        self.comments: list[dict[str, Any]] = []

    @property
    def approvals(self) -> int:
        return sum(1 for d in self.decisions if d["decision"] == "approve")

    def expired_at(self, now: datetime) -> bool:
        return datetime.fromisoformat(self.expires_at) <= now

    def decide(
        self, actor: str, roles: list[str], decision: str, reason: str, now: datetime
    ) -> None:
        if decision not in DECISIONS:
            raise InvalidInput(f"decision must be one of {sorted(DECISIONS)}")
        if self.status != "pending":
            raise Conflict(f"approval request {self.id} is {self.status}")
        if self.expired_at(now):
            raise Conflict(f"approval request {self.id} expired at {self.expires_at}")
        if actor == self.requested_by:
            raise Forbidden("the requester of a promotion cannot decide on its approval")
        if self.author is not None and actor == self.author:
            raise Forbidden("the author of the change cannot decide on its approval")
        if any(d["actor"] == actor for d in self.decisions):
            raise Conflict(f"{actor} already decided on approval request {self.id}")
        if not set(roles) & set(self.roles):
            raise Forbidden(f"approving needs one of the roles {self.roles}")
        if decision == "reject" and not reason.strip():
            raise InvalidInput("a rejection needs a reason")
        self._decided(
            decision=decision, reason=reason, roles=sorted(roles), at=now.isoformat(), actor=actor
        )

    @event("Decided")
    def _decided(self, decision: str, reason: str, roles: list[str], at: str, actor: str) -> None:
        self.decisions = [
            *self.decisions,
            {"actor": actor, "roles": roles, "decision": decision, "reason": reason, "at": at},
        ]
        if decision == "reject":
            self.status = "rejected"
        elif self.approvals >= self.required_count:
            self.status = "approved"

    def comment(self, text: str, at: str, actor: str) -> None:
        if not text.strip():
            raise InvalidInput("a comment needs text")
        self._commented(text=text, at=at, actor=actor)

    @event("Commented")
    def _commented(self, text: str, at: str, actor: str) -> None:
        self.comments = [*self.comments, {"actor": actor, "text": text, "at": at}]

    def expire(self, now: datetime, actor: str) -> bool:
        """The scheduler's command: a pending request past its expiry; False when not due."""
        if self.status != "pending" or not self.expired_at(now):
            return False
        self._expired(at=now.isoformat(), actor=actor)
        return True

    @event("Expired")
    def _expired(self, at: str, actor: str) -> None:
        self.status = "expired"

    def void(self, reason: str, at: str, actor: str) -> bool:
        if self.status not in {"pending", "approved"}:
            return False
        self._voided(reason=reason, at=at, actor=actor)
        return True

    @event("Voided")
    def _voided(self, reason: str, at: str, actor: str) -> None:
        self.status = "voided"
