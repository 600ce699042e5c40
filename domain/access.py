"""The AccessDenial aggregate: every refused request is itself an audit event (never a secret)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import event

from domain.base import PearlAggregate


class AccessDenial(PearlAggregate):
    """One refused attempt: who, what, on which resource, and why; recorded in the caller's org."""

    @staticmethod
    def create_id(**_: Any) -> UUID:
        return uuid4()

    @event("Recorded")
    def __init__(
        self,
        org: str,
        action: str,
        resource: str,
        reason: str,
        code: str,
        channel: str,
        at: str,
        actor: str,
    ) -> None:
        self.org = org
        self.action = action
        self.resource = resource
        self.reason = reason
        self.code = code
        self.channel = channel
        self.at = at
