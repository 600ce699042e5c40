"""The GatePolicy aggregate: every version of one environment's gate policy, with who and why.

A policy is an org baseline (`project_id` None) or a project's own, for one environment; its
id derives from (org, project, environment), so each has exactly one history. Every change is
a `Revised` event carrying the whole document, its digest, the author and the reason.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id
from domain.errors import NotFound

BASELINE = "*"


def gate_policy_id(org: str, project_id: str | None, environment: str) -> UUID:
    return stable_id("gate_policy", org, project_id or BASELINE, environment)


class GatePolicy(PearlAggregate):
    """Versions 1..n of a policy; version n is in force."""

    @staticmethod
    def create_id(org: str, project_id: str | None, environment: str, **_: Any) -> UUID:
        return gate_policy_id(org, project_id, environment)

    @event("Created")
    def __init__(self, org: str, project_id: str | None, environment: str, actor: str) -> None:
        self.org = org
        self.project_id = project_id
        self.environment = environment
        self.versions: list[dict[str, Any]] = []

    @property
    def current(self) -> dict[str, Any] | None:
        return self.versions[-1] if self.versions else None

    def at_version(self, number: int) -> dict[str, Any]:
        if not 1 <= number <= len(self.versions):
            raise NotFound(f"policy version {number} not found")
        return self.versions[number - 1]

    def revise(
        self, document: dict[str, Any], digest: str, reason: str, at: str, actor: str
    ) -> bool:
        """Record a new version; the document in force again changes nothing (False)."""
        if self.current is not None and self.current["digest"] == digest:
            return False
        self._revised(
            version=len(self.versions) + 1,
            document=document,
            digest=digest,
            reason=reason,
            at=at,
            actor=actor,
        )
        return True

    @event("Revised")
    def _revised(
        self, version: int, document: dict[str, Any], digest: str, reason: str, at: str, actor: str
    ) -> None:
        self.versions.append(
            {
                "version": version,
                "document": document,
                "digest": digest,
                "reason": reason,
                "author": actor,
                "at": at,
            }
        )
