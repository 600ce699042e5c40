"""Events stored before the text rules, holding NUL or a lone surrogate, project like any other.

Written straight into `pearl_events` with SQL, as the old bug stored them: the live projector
applies them with the text escaped visibly (`\\u0000`, `\\ud800`), a rebuild gives the same
rows, the audit chain verifies, and later commands on such an aggregate work.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest

from services.rebuild import rebuild_read_models
from services.settings import Settings
from tests.support.helpers import eventually, finding_body, make_org_and_project
from tests.support.legacy import store_old_copy
from tests.support.processes import process_env
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.integration

TABLES = ("finding_view", "audit_log")
CHECKSUM = "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t"


async def _checksums(url: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        out = {}
        for table in TABLES:
            cur = await conn.execute(CHECKSUM.format(table))
            out[table] = (await cur.fetchone())[0]  # type: ignore[index]
        return out


async def _head(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT max(notification_id) FROM pearl_events")
        return int((await cur.fetchone())[0])  # type: ignore[index]


async def _caught_up(stack: Stack, head: int) -> dict[str, Any] | None:
    """The /ready body once it is 200 with every checkpoint at `head` and no failure."""
    r = await stack.http.get("/ready")
    body: dict[str, Any] = r.json()
    states = body["projections"].values()
    done = all(s["position"] >= head and s["failure"] is None for s in states)
    return body if r.status_code == 200 and done else None


async def _failures(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT count(*) FROM projection_failure")
        return int((await cur.fetchone())[0])  # type: ignore[index]


def _cli_verify(settings: Settings, org: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "verify", "--org", org],
        env=process_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_old_events_holding_nul_and_lone_surrogates_project_rebuild_and_verify(
    fresh_settings: Settings,
):
    url = fresh_settings.database_url or ""
    async with running_stack(fresh_settings) as stack:
        org, project, _ = await make_org_and_project(stack.http, stack.admin)
        marker = f"marker{uuid.uuid4().hex[:8]}"
        r = await stack.http.post(
            f"/v1/projects/{project}/findings",
            json=finding_body(title=marker, rule_id="template", message=marker),
            headers=stack.admin,
        )
        assert r.status_code == 201, r.text
        template = r.json()["position"]

        # the denial `GET /v1/orgs/x%00/projects` stored before the fix (no credentials)
        slug = f"deny{uuid.uuid4().hex[:8]}"
        assert (await stack.http.get(f"/v1/orgs/{slug}/projects")).status_code == 401

        async def denial_stored() -> int | None:
            async with await psycopg.AsyncConnection.connect(url) as conn:
                cur = await conn.execute(
                    "SELECT notification_id FROM pearl_events WHERE topic LIKE %s"
                    " AND position(%s in convert_from(state, 'UTF8')) > 0",
                    ("%AccessDenial%", slug),
                )
                row = await cur.fetchone()
                return int(row[0]) if row else None

        denial_template = await eventually(denial_stored)

        nul_finding, nul_id = await store_old_copy(url, template, marker, "a\x00b")
        lone, lone_id = await store_old_copy(url, template, marker, "c\ud800d")
        denial, denial_id = await store_old_copy(url, denial_template, slug, "x\x00")
        assert nul_finding < lone < denial

        # the live path: the relay publishes, the projector applies, /ready stays 200
        await eventually(lambda: _caught_up(stack, denial), timeout=30)
        assert await _failures(url) == 0

        r = await stack.http.get(f"/v1/findings/{nul_id}", headers=stack.admin)
        assert r.status_code == 200, r.text
        row = r.json()
        assert row["title"] == "a\\u0000b"
        assert row["history"][0]["data"]["title"] == "a\\u0000b"  # the aggregate's events too
        r = await stack.http.get(f"/v1/findings/{lone_id}", headers=stack.admin)
        assert r.status_code == 200 and r.json()["title"] == "c\\ud800d", r.text
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute(
                "SELECT data->>'action', data->>'resource' FROM audit_log WHERE aggregate_id = %s",
                (str(denial_id),),
            )
            action, resource = await cur.fetchone()  # type: ignore[misc]
        assert action == "GET /v1/orgs/x\\u0000/projects"
        assert resource == "/v1/orgs/x\\u0000/projects"

        # a later command on the finding reconstructed from the old event works
        r = await stack.http.post(
            f"/v1/findings/{nul_id}/triage",
            json={"status": "false_positive", "justification": "test code"},
            headers=stack.admin,
        )
        assert r.status_code == 200, r.text
        triaged = r.json()["position"]
        r = await stack.http.get(
            f"/v1/findings/{nul_id}", params={"min_position": triaged}, headers=stack.admin
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "false_positive" and r.json()["title"] == "a\\u0000b"
        head = await _head(url)
        await eventually(lambda: _caught_up(stack, head), timeout=30)

        # time travel recomputes the aggregates from the store, through the same mapper
        for position, status in ((lone, "open"), (triaged, "false_positive")):
            r = await stack.http.get(
                f"/v1/projects/{project}/state",
                params={"as_of": str(position)},
                headers=stack.admin,
            )
            assert r.status_code == 200, r.text
            then = {f["id"]: f for f in r.json()["findings"]}
            assert then[str(nul_id)]["title"] == "a\\u0000b"
            assert then[str(nul_id)]["status"] == status
            assert then[str(lone_id)]["title"] == "c\\ud800d"

        # the rebuild path gives the live rows; audit verification recomputes the same chain
        live = await _checksums(url)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("DELETE FROM finding_view WHERE project_id = %s", (project,))
        assert (await _checksums(url))["finding_view"] != live["finding_view"]
        assert await rebuild_read_models(fresh_settings) >= head
        assert await _checksums(url) == live
        for audited in (org, "system"):
            ok = await asyncio.to_thread(_cli_verify, fresh_settings, audited)
            assert ok.returncode == 0, ok.stdout + ok.stderr
            assert "intact" in ok.stdout
