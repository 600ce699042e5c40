"""The Project aggregate: a deliverable with an ordered list of environments."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id


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


def project_id(org: str, slug: str) -> UUID:
    return stable_id("project", org, slug)
