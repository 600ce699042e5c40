"""`pearl projections rebuild --name N` restores one read model while the projector runs."""

from __future__ import annotations

import psycopg
import pytest

from services.rebuild import rebuild_read_models
from tests.support.helpers import finding_body, make_org_and_project
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
CHECKSUM = "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t WHERE org = %s"


async def _checksums(url: str, org: str) -> dict[str, str]:
    """Checksums of one org's rows (other tests' orgs may change meanwhile)."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        out = {}
        for table in ("finding_view", "audit_log", "scan_view"):
            cur = await conn.execute(CHECKSUM.format(table), (org,))
            out[table] = (await cur.fetchone())[0]
        return out


async def test_rebuilding_one_read_model_restores_it_and_leaves_the_others(stack: Stack):
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    position = 0
    for i in range(3):
        r = await stack.http.post(
            f"/v1/projects/{project}/findings",
            json=finding_body(rule_id=f"x{i}"),
            headers=stack.admin,
        )
        position = r.json()["position"]
    await stack.http.get(
        f"/v1/projects/{project}/findings", params={"min_position": position}, headers=stack.admin
    )
    url = stack.settings.database_url or ""
    before = await _checksums(url, org)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DELETE FROM finding_view WHERE project_id = %s", (project,))
    assert (await _checksums(url, org))["finding_view"] != before["finding_view"]

    count = await rebuild_read_models(stack.settings, ["findings"])

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        stored = (await (await conn.execute("SELECT count(*) FROM pearl_events")).fetchone())[0]
    assert count == stored >= 3  # every stored event once (positions may have gaps)
    assert await _checksums(url, org) == before
    with pytest.raises(ValueError, match="unknown read model"):
        await rebuild_read_models(stack.settings, ["nonsense"])
