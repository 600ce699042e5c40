"""The Agent aggregate: a coding agent of one org and its autonomy per environment.

Pausing (the kill switch) is saved together with the release of every packet the agent holds;
commands re-read the agent, so a paused agent is refused from that moment on.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.authz import LEVELS, AgentGrant
from domain.base import PearlAggregate, stable_id
from domain.errors import Conflict, InvalidInput


def agent_id(org: str, slug: str) -> UUID:
    return stable_id("agent", org, slug)


class Agent(PearlAggregate):
    """Registered → (autonomy set | paused ⇄ resumed)*."""

    @staticmethod
    def create_id(org: str, slug: str, **_: Any) -> UUID:
        return agent_id(org, slug)

    @event("Registered")
    def __init__(
        self,
        org: str,
        slug: str,
        name: str,
        owner: str,
        capabilities: list[str],
        autonomy: dict[str, str],
        registered_at: str,
        actor: str,
    ) -> None:
        self.org = org
        self.slug = slug
        self.name = name
        self.owner = owner
        self.capabilities = list(capabilities)
        self.autonomy = {"*": "observe", **autonomy}
        self.registered_at = registered_at
        self.paused = False
        self.pause_reason = ""

    @property
    def grant(self) -> AgentGrant:
        """What authorization needs to know about this agent, as of now."""
        return AgentGrant(self.slug, tuple(sorted(self.autonomy.items())), self.paused)

    def set_autonomy(self, environment: str, level: str, reason: str, actor: str) -> bool:
        if level not in LEVELS:
            raise InvalidInput(f"unknown autonomy level {level!r}")
        if self.autonomy.get(environment) == level:
            return False
        self._autonomy_set(environment=environment, level=level, reason=reason, actor=actor)
        return True

    @event("AutonomySet")
    def _autonomy_set(self, environment: str, level: str, reason: str, actor: str) -> None:
        self.autonomy[environment] = level

    def pause(self, reason: str, released: list[str], actor: str) -> None:
        """Stop the agent; `released` names the packets whose leases go with it."""
        if self.paused:
            raise Conflict(f"agent {self.slug!r} is already paused")
        self._paused(reason=reason, released=released, actor=actor)

    @event("Paused")
    def _paused(self, reason: str, released: list[str], actor: str) -> None:
        self.paused = True
        self.pause_reason = reason

    def resume(self, reason: str, actor: str) -> None:
        if not self.paused:
            raise Conflict(f"agent {self.slug!r} is not paused")
        self._resumed(reason=reason, actor=actor)

    @event("Resumed")
    def _resumed(self, reason: str, actor: str) -> None:
        self.paused = False
        self.pause_reason = ""
