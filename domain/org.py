"""The Org aggregate: the tenant every other aggregate belongs to."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id


class Org(PearlAggregate):
    """A tenant; its slug is its natural key and appears in every subject and row of it."""

    @staticmethod
    def create_id(org: str, **_: Any) -> UUID:
        return org_id(org)

    @event("Created")
    def __init__(self, org: str, name: str, actor: str) -> None:
        self.org = org
        self.name = name
        self.created_by = actor


def org_id(org: str) -> UUID:
    return stable_id("org", org)
