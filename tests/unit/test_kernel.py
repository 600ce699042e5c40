"""The kernel's load/find/save paths (domain/kernel.py), on the in-memory recorder."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from domain.api_key import ApiKey, api_key_id
from domain.authz import Principal
from domain.errors import NotFound
from domain.org import Org, org_id
from domain.pearl_app import PearlApp
from domain.project import Project


def test_find_answers_the_stored_aggregate_and_none_when_absent_or_of_another_class(
    app: PearlApp, org: str
) -> None:
    found = app.find(Org, org_id(org))

    assert found is not None and found.org == org
    assert app.find(Org, uuid4()) is None
    assert app.find(Project, org_id(org)) is None


def test_load_shallow_gives_a_copy_whose_changes_leave_the_stored_aggregate_alone(
    app: PearlApp, project: UUID
) -> None:
    first = app.load(Project, project, "project", shallow=True)
    environments = list(first.environments)
    first.environments.append("moon")

    again = app.load(Project, project, "project", shallow=True)

    assert again.environments == environments
    with pytest.raises(NotFound, match=r"^project x not found$"):
        app.load(Project, uuid4(), "project x", shallow=True)


def test_save_quietly_is_false_and_saves_nothing_when_a_concurrent_save_won(
    app: PearlApp, platform_admin: Principal
) -> None:
    one = app.load(ApiKey, api_key_id(platform_admin.id), "key")
    two = app.load(ApiKey, api_key_id(platform_admin.id), "key")
    one.use(at="2026-01-01T00:00:00+00:00")
    two.use(at="2026-01-02T00:00:00+00:00")

    assert app.save_quietly(one) is True
    head = app.position
    assert app.save_quietly(two) is False
    assert app.position == head
    assert app.load(ApiKey, api_key_id(platform_admin.id), "key").last_used_at == (
        "2026-01-01T00:00:00+00:00"
    )
