"""The Project aggregate: a deliverable with an ordered list of environments."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import event

from contracts.policy import Profile
from domain.base import PearlAggregate, stable_id
from domain.errors import InvalidInput

#: A project's profile until someone describes it (the `Profile` contract's defaults).
DEFAULT_PROFILE: dict[str, Any] = msgspec.to_builtins(Profile())


class Project(PearlAggregate):
    """A project of one org; environments are ordered (dev → staging → prod by default)."""

    @staticmethod
    def create_id(org: str, slug: str, **_: Any) -> UUID:
        return project_id(org, slug)

    @event("Created")
    def __init__(self, org: str, slug: str, name: str, environments: list[str], actor: str) -> None:
        self.org = org
        self.slug = slug
        self.name = name
        self.environments = list(environments)
        self.profile: dict[str, Any] = dict(DEFAULT_PROFILE)

    def set_profile(self, profile: dict[str, Any], actor: str) -> bool:
        """Describe what the project is (policies refer to it); False when nothing changed."""
        if profile == self.profile:
            return False
        self._profile_set(profile=dict(profile), actor=actor)
        return True

    @event("ProfileSet")
    def _profile_set(self, profile: dict[str, Any], actor: str) -> None:
        self.profile = dict(profile)

    def previous_environment(self, name: str) -> str | None:
        if name not in self.environments:
            raise InvalidInput(
                f"environment {name!r} is not one of the project's {self.environments}"
            )
        index = self.environments.index(name)
        return self.environments[index - 1] if index else None


def project_id(org: str, slug: str) -> UUID:
    return stable_id("project", org, slug)
