"""PostgreSQL row-level security backs up the application's org scoping on every read model."""

from __future__ import annotations

import psycopg
import pytest

from projections import queries
from projections.runner import READER_ROLE, all_tables
from tests.support.helpers import finding_body, make_org_and_project
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


async def _count_as_reader(database_url: str, scope: str, table: str, where: str = "") -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {READER_ROLE}")
        await conn.execute("SELECT set_config('pearl.org', %s, true)", (scope,))
        cur = await conn.execute(f"SELECT count(*) FROM {table} {where}")
        return (await cur.fetchone())[0]


async def test_query_with_forged_org_filter_sees_nothing_of_another_org(stack: Stack):
    victim, project, _ = await make_org_and_project(stack.http, stack.admin)
    attacker, _, _ = await make_org_and_project(stack.http, stack.admin)
    r = await stack.http.post(
        f"/v1/projects/{project}/findings", json=finding_body(), headers=stack.admin
    )
    await stack.http.get(
        f"/v1/projects/{project}/findings",
        params={"min_position": r.json()["position"]},
        headers=stack.admin,
    )
    url = stack.settings.database_url or ""
    forged = f"WHERE org = '{victim}'"
    for table in all_tables():
        assert await _count_as_reader(url, attacker, table, forged) == 0, table
    assert await _count_as_reader(url, victim, "finding_view", forged) == 1
    assert await _count_as_reader(url, queries.ALL_ORGS, "finding_view", forged) == 1


async def test_reader_role_cannot_write_read_models(stack: Stack):
    url = stack.settings.database_url or ""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with conn.transaction():
                await conn.execute(f"SET LOCAL ROLE {READER_ROLE}")
                await conn.execute("DELETE FROM audit_log")


async def test_api_read_of_other_org_finding_by_id_is_404(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    other, _, _ = await make_org_and_project(stack.http, stack.admin)
    r = await stack.http.post(
        f"/v1/projects/{project}/findings", json=finding_body(), headers=stack.admin
    )
    fid, position = r.json()["id"], r.json()["position"]
    key = await stack.http.post(
        f"/v1/orgs/{other}/keys", json={"name": "x", "roles": ["admin"]}, headers=stack.admin
    )
    intruder = {"Authorization": f"Bearer {key.json()['token']}"}
    r = await stack.http.get(
        f"/v1/findings/{fid}", params={"min_position": position}, headers=intruder
    )
    assert r.status_code == 404
