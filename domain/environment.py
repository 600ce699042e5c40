"""The DeployEnvironment aggregate: which version is live in one environment of a project.

It serializes promotions (one open promotion at a time: two concurrent requests cannot both
open one, optimistic concurrency decides), keeps the release history (for soak time and
rollback) and the versions whose release failed there.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id
from domain.errors import Conflict


def environment_id(project_id: str, name: str) -> UUID:
    return stable_id("environment", project_id, name)


class DeployEnvironment(PearlAggregate):
    @staticmethod
    def create_id(project_id: str, name: str, **_: Any) -> UUID:
        return environment_id(project_id, name)

    @event("Opened")
    def __init__(self, org: str, project_id: str, name: str, actor: str) -> None:
        self.org = org
        self.project_id = project_id
        self.name = name
        self.pending: str | None = None
        self.releases: list[dict[str, Any]] = []
        self.failed: list[str] = []

    @property
    def current(self) -> dict[str, Any] | None:
        live = [r for r in self.releases if r["until"] is None]
        return live[-1] if live else None

    def live_since(self, digest: str) -> str | None:
        current = self.current
        return current["since"] if current and current["digest"] == digest else None

    def start_promotion(self, promotion_id: str, actor: str) -> None:
        if self.pending is not None:
            raise Conflict(
                f"promotion {self.pending} to {self.name!r} is still open; reject it first"
            )
        self._promotion_opened(promotion_id=promotion_id, actor=actor)

    @event("PromotionOpened")
    def _promotion_opened(self, promotion_id: str, actor: str) -> None:
        self.pending = promotion_id

    def end_promotion(self, promotion_id: str, outcome: str, actor: str) -> None:
        if self.pending == promotion_id:
            self._promotion_closed(promotion_id=promotion_id, outcome=outcome, actor=actor)

    @event("PromotionClosed")
    def _promotion_closed(self, promotion_id: str, outcome: str, actor: str) -> None:
        self.pending = None

    def promote(
        self, promotion_id: str, release: str, digest: str, commit: str, at: str, actor: str
    ) -> None:
        self._promoted(
            promotion_id=promotion_id,
            release=release,
            digest=digest,
            commit=commit,
            at=at,
            actor=actor,
        )

    @event("Promoted")
    def _promoted(
        self, promotion_id: str, release: str, digest: str, commit: str, at: str, actor: str
    ) -> None:
        for earlier in self.releases:
            if earlier["until"] is None:
                earlier["until"] = at
                earlier["outcome"] = "superseded"
        self.releases.append(
            {
                "promotion_id": promotion_id,
                "release": release,
                "digest": digest,
                "commit": commit,
                "since": at,
                "until": None,
                "outcome": "live",
            }
        )
        if self.pending == promotion_id:
            self.pending = None

    def rollback_target(self) -> dict[str, Any]:
        """The release before the current one that did not fail here."""
        current = self.current
        if current is None:
            raise Conflict(f"nothing is live in {self.name!r}; there is nothing to roll back")
        failed = {*self.failed, current["digest"]}
        for release in reversed(self.releases[:-1]):
            if release["digest"] not in failed:
                return dict(release)
        raise Conflict(f"{self.name!r} has no earlier good version to roll back to")

    def rollback(self, reason: str, at: str, actor: str) -> dict[str, Any]:
        current = self.current
        target = self.rollback_target()
        assert current is not None
        self._rolled_back(
            from_release=current["release"],
            from_digest=current["digest"],
            to_release=target["release"],
            to_digest=target["digest"],
            to_commit=target["commit"],
            reason=reason,
            at=at,
            actor=actor,
        )
        return target

    @event("RolledBack")
    def _rolled_back(
        self,
        from_release: str,
        from_digest: str,
        to_release: str,
        to_digest: str,
        to_commit: str,
        reason: str,
        at: str,
        actor: str,
    ) -> None:
        for earlier in self.releases:
            if earlier["until"] is None:
                earlier["until"] = at
                earlier["outcome"] = "rolled_back"
        self.failed = [*self.failed, from_digest]
        self.releases.append(
            {
                "promotion_id": None,
                "release": to_release,
                "digest": to_digest,
                "commit": to_commit,
                "since": at,
                "until": None,
                "outcome": "live",
            }
        )
