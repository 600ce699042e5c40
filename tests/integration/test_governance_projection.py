"""The governance, agent and task read models, projected by the live projector from stories
that store every governance and agent event: their rows, their queries, idempotence, rebuild
and row-level security."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import nats
import psycopg
import pytest
from psycopg.rows import dict_row

from contracts.commands import CreateOrg, CreateProject
from contracts.envelope import EventEnvelope
from domain.pearl_app import PearlApp
from domain.release_version import release_version_id
from domain.wire import to_envelope
from projections import agents, governance, queries
from projections import governance_queries as gq
from projections import task_queries as tq
from projections.runner import READER_ROLE, replay_into
from services.projector import Projector
from services.rebuild import rebuild_read_models
from services.relay import Relay
from services.runtime import read_pool, subjects_of
from services.settings import Settings
from tests.conftest import provisioned
from tests.support.agents import AgentStory, agents_story
from tests.support.governance import COMMIT_1, SteppingClock, Story, governance_story
from tests.support.helpers import slug
from tests.support.infra import Servers

pytestmark = pytest.mark.integration

CHECKSUM = "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t WHERE org = %s"
TABLES = ("project_view", *governance.PROJECTION.tables, *agents.PROJECTION.tables)


@dataclass
class Told:
    """The story as stored and projected: its org, ids, clock, app and a read pool."""

    org: str
    story: Story
    clock: SteppingClock
    app: PearlApp
    pool: queries.Pool
    url: str
    last: int
    settings: Settings
    agents: AgentStory


@pytest.fixture(scope="module")
async def told(infra: Servers) -> AsyncIterator[Told]:
    """The story on a database of its own, projected by a relay and a projector only.

    No gatekeeper runs: it would evaluate the story's promotions too, racing its commands.
    """
    async with provisioned(infra) as settings:
        nats_url, url = settings.require_urls()
        clock = SteppingClock()
        app = await asyncio.to_thread(PearlApp, env=settings.event_store_env(), clock=clock)
        nc = await nats.connect(nats_url)
        subjects = subjects_of(settings)
        stop = asyncio.Event()
        relay = Relay(app, nc.jetstream(), subjects, url, settings.relay_batch_size)
        projector = Projector(nc.jetstream(), subjects, url, settings.projector_batch_size)
        tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(projector.run(stop))]
        pool = read_pool(url, 2)
        await pool.open()
        org = slug("gov")

        def tell() -> tuple[Story, AgentStory]:
            admin = app.authenticate(app.bootstrap_admin_key("test admin"))
            app.create_org(admin, CreateOrg(slug=org, name="Governed"))
            project = UUID(
                app.create_project(admin, org, CreateProject(slug="shop", name="Shop")).ids["id"]
            )
            story = governance_story(app, admin, org, project, clock)
            return story, agents_story(app, admin, org, project, clock)

        try:
            story, told_agents = await asyncio.to_thread(tell)
            last = app.recorder.max_notification_id() or 0
            assert await queries.wait_for_position(pool, last, 15.0)
            yield Told(org, story, clock, app, pool, url, last, settings, told_agents)
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 5)
            await nc.close()
            await pool.close()
            app.close()


async def _rows(url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()


async def _checksums(url: str, org: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        out = {}
        for table in TABLES:
            cur = await conn.execute(CHECKSUM.format(table), (org,))
            row = await cur.fetchone()
            assert row is not None
            out[table] = row[0]
        return out


def _envelopes(app: PearlApp, upto: int) -> list[EventEnvelope]:
    notes = app.recorder.select_notifications(1, upto)
    return [to_envelope(app.mapper.to_domain_event(n), n.id) for n in notes]


async def test_profile_policies_versions_and_test_runs_are_projected(told: Told):
    s, pid = told.story, told.story.project
    (project,) = await _rows(told.url, "SELECT profile FROM project_view WHERE id = %s", pid)
    assert project["profile"] == {
        "criticality": "high",
        "data_classification": "internal",
        "internet_facing": False,
        "owner_team": "payments",
    }
    (policy,) = await _rows(told.url, "SELECT * FROM gate_policy_view WHERE id = %s", s.policy)
    assert (policy["project_id"], policy["environment"], policy["current_version"]) == (
        None,
        "dev",
        2,
    )
    history = await gq.policy_versions(told.pool, told.org, told.org, None, "dev")
    assert [(v["version"], v["reason"]) for v in history] == [
        (1, "sign-off for dev"),
        (2, "a longer sign-off window"),
    ]
    assert history[1]["document"]["rules"][0]["ttl_hours"] == 2.0
    assert history[1]["digest"] == policy["current_digest"]

    versions = await gq.versions(told.pool, pid, told.org)
    assert [(v["version"], v["author"]) for v in versions] == [
        ("1.0.0", "dev@example.com"),
        ("1.1.0", "dev@example.com"),
    ]
    assert str(versions[0]["id"]) == str(release_version_id(pid, "1.0.0"))
    runs = await gq.test_runs(told.pool, pid, told.org, commit=COMMIT_1)
    assert [(r["passed"], r["failed"], r["skipped"], r["coverage"]) for r in runs] == [
        (10, 1, 2, 0.8)
    ]
    assert await gq.test_runs(told.pool, pid, told.org, commit="f" * 40) == []


async def test_promotions_follow_their_gate_and_close(told: Told):
    s, pid = told.story, told.story.project
    page = await gq.promotions(told.pool, pid, told.org)
    assert [str(p["id"]) for p in page.items] == s.promotions
    first, second, third = page.items
    assert (first["status"], first["evaluations"], first["last_result"]) == (
        "promoted",
        2,
        "passed",
    )
    assert str(first["last_decision_id"]) == s.decisions[1]
    assert str(first["approval_request_id"]) == s.approvals[0]
    assert first["closed_at"] is not None and first["closed_by"]
    assert (second["status"], second["version"]) == ("promoted", "1.1.0")
    assert (third["status"], third["evaluations"], third["close_reason"]) == (
        "rejected",
        0,
        "not before the fix",
    )
    assert str(third["approval_request_id"]) == s.approvals[3]

    rejected = await gq.promotions(told.pool, pid, told.org, status="rejected")
    assert [str(p["id"]) for p in rejected.items] == [s.promotions[2]]
    one = await gq.promotions(told.pool, pid, told.org, environment="dev", limit=1)
    assert one.next_cursor is not None
    rest = await gq.promotions(told.pool, pid, told.org, after=int(one.next_cursor))
    assert [str(p["id"]) for p in one.items + rest.items] == s.promotions

    decisions = await gq.decisions(told.pool, s.promotions[0], told.org)
    assert [(d["seq"], d["result"]) for d in decisions] == [(1, "awaiting_approval"), (2, "passed")]
    assert [str(d["decision_id"]) for d in decisions] == s.decisions[:2]
    assert decisions[1]["policy"]["baseline"]["version"] == 2
    assert decisions[1]["rules"][0]["rule_id"] == "sign-off"
    assert (decisions[1]["trigger"], decisions[1]["environment"]) == ("manual", "dev")
    one_decision = await gq.decision(told.pool, s.decisions[3], told.org)
    assert one_decision is not None
    assert (one_decision["seq"], str(one_decision["promotion_id"])) == (2, s.promotions[1])
    assert await gq.promotion(told.pool, s.promotions[0], "someone-else") is None


async def test_environment_shows_the_rolled_back_release_and_its_history(told: Told):
    pid = told.story.project
    (dev,) = await gq.environments(told.pool, pid, told.org)
    assert (dev["name"], dev["current_version"], dev["current_commit"]) == (
        "dev",
        "1.0.0",
        COMMIT_1,
    )
    assert dev["pending_promotion_id"] is None
    versions = {v["version"]: v for v in await gq.versions(told.pool, pid, told.org)}
    assert dev["failed_digests"] == [versions["1.1.0"]["digest"]]
    assert dev["current_digest"] == versions["1.0.0"]["digest"]

    page = await gq.releases(told.pool, pid, told.org, environment="dev")
    history = [(r["kind"], r["version"], r["from_version"], r["reason"]) for r in page.items]
    assert history == [
        ("promoted", "1.0.0", None, None),
        ("promoted", "1.1.0", "1.0.0", None),
        ("rolled_back", "1.0.0", "1.1.0", "1.1.0 broke checkout"),
    ]
    assert dev["live_since"] == page.items[-1]["at"]
    assert [str(r["promotion_id"]) for r in page.items[:2]] == told.story.promotions[:2]
    assert page.items[2]["promotion_id"] is None
    assert (await gq.releases(told.pool, pid, told.org, environment="prod")).items == []


async def test_approvals_record_decisions_comments_expiry_and_voiding(told: Told):
    s, pid = told.story, told.story.project
    rows = await gq.approvals(told.pool, pid, told.org)
    assert [str(r["id"]) for r in rows] == s.approvals
    assert [r["status"] for r in rows] == ["approved", "approved", "expired", "voided"]
    first = rows[0]
    assert (first["approvals"], first["required_count"], first["roles"]) == (1, 1, ["approver"])
    (decision,) = first["decisions"]
    assert (decision["decision"], decision["roles"]) == ("approve", ["approver"])
    assert decision["actor"] not in (first["requested_by"], first["author"])
    assert [c["text"] for c in first["comments"]] == ["checked 1.0.0"]
    assert [r["number"] for r in rows] == [1, 1, 1, 2]
    pending = await gq.approvals(told.pool, pid, told.org, status="voided", promotion_id=None)
    assert [str(r["id"]) for r in pending] == [s.approvals[3]]
    by_promotion = await gq.approvals(told.pool, pid, told.org, promotion_id=s.promotions[2])
    assert [str(r["id"]) for r in by_promotion] == s.approvals[2:]
    one = await gq.approval(told.pool, s.approvals[2], told.org)
    assert one is not None and one["status"] == "expired"


async def test_exceptions_reach_every_state(told: Told):
    s, pid = told.story, told.story.project
    page = await gq.exceptions(told.pool, pid, told.org)
    status = {str(e["id"]): e for e in page.items}
    assert {name: status[i]["status"] for name, i in s.exceptions.items()} == {
        "active": "active",
        "rejected": "rejected",
        "revoked": "revoked",
        "expired": "expired",
    }
    active = status[s.exceptions["active"]]
    assert (active["rule_id"], active["environment"], active["approved_by"] is not None) == (
        "python.sqli",
        "dev",
        True,
    )
    assert active["compensating_controls"] == ["waf rule 12"]
    assert status[s.exceptions["rejected"]]["reason"] == "no"
    assert status[s.exceptions["revoked"]]["reason"] == "fixed instead"
    only = await gq.exceptions(told.pool, pid, told.org, status="active")
    assert [str(e["id"]) for e in only.items] == [s.exceptions["active"]]
    one = await gq.exception(told.pool, s.exceptions["expired"], told.org)
    assert one is not None and one["cwe"] is None


async def test_scheduler_queries_find_what_is_due_and_open(told: Told):
    s = told.story
    later = told.clock() + timedelta(days=40)
    assert s.exceptions["active"] in await gq.exceptions_due(told.pool, later, 10_000)
    assert s.exceptions["active"] not in await gq.exceptions_due(told.pool, told.clock(), 10_000)
    assert not set(s.approvals) & set(await gq.approvals_due(told.pool, later, 10_000))
    assert await gq.open_promotions(told.pool, s.project) == []
    assert await gq.open_promotions_in_org_env(told.pool, told.org, "dev") == []


async def test_agents_and_task_packets_are_projected(told: Told):
    a = told.agents
    agent = await tq.agent(told.pool, told.org, a.agent, told.org)
    assert agent is not None
    assert agent["autonomy"] == {"*": "act"} and agent["paused"] is False
    assert agent["capabilities"] == ["code-fix"] and agent["owner"] == "platform-team"
    verified = await tq.task(told.pool, a.verified, told.org)
    reopened = await tq.task(told.pool, a.reopened, told.org)
    revoked = await tq.task(told.pool, a.revoked, told.org)
    assert verified is not None and reopened is not None and revoked is not None
    assert verified["status"] == "verified" and verified["remaining"] == []
    assert verified["attempts"] == 3 and verified["outcome"]["branch"] == "fix"
    assert reopened["status"] == "open" and reopened["remaining"] == reopened["fingerprints"]
    assert revoked["status"] == "open" and revoked["last_event"] == "revoked"
    project = str(verified["project_id"])
    page = await tq.tasks(told.pool, project, told.org, status="open")
    assert {str(t["id"]) for t in page.items} == {a.reopened, a.revoked}
    assert await tq.held_by(told.pool, told.org, a.agent) == []
    assert await tq.completed_tasks(told.pool, project) == []
    later = told.clock() + timedelta(days=1)
    assert await tq.leases_to_end(told.pool, later, 100) == []


async def test_applying_the_same_events_again_changes_nothing(told: Told):
    before = await _checksums(told.url, told.org)
    envelopes = [e for e in _envelopes(told.app, told.last) if e.org == told.org]
    async with await psycopg.AsyncConnection.connect(told.url) as conn:
        for _ in range(2):
            async with conn.transaction():
                await replay_into(conn, envelopes, [governance.PROJECTION, agents.PROJECTION])
    assert await _checksums(told.url, told.org) == before


async def test_rebuilding_the_governance_read_models_gives_identical_rows(told: Told):
    before = await _checksums(told.url, told.org)
    assert all(before.values())
    async with await psycopg.AsyncConnection.connect(told.url, autocommit=True) as conn:
        await conn.execute("DELETE FROM promotion_view WHERE org = %s", (told.org,))
        await conn.execute("UPDATE project_view SET profile = '{}' WHERE org = %s", (told.org,))
        await conn.execute("DELETE FROM task_view WHERE org = %s", (told.org,))
    assert await _checksums(told.url, told.org) != before

    await rebuild_read_models(told.settings, ["orgs", "governance", "agents"])
    assert await _checksums(told.url, told.org) == before

    assert await rebuild_read_models(told.settings) == told.last  # every event, no gap
    assert await _checksums(told.url, told.org) == before


async def test_reader_of_another_org_sees_no_governance_row(told: Told):
    other = slug("intruder")
    forged = "WHERE org = %s"
    async with await psycopg.AsyncConnection.connect(told.url) as conn:
        for table in TABLES:
            counts = []
            for scope in (other, told.org):
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL ROLE {READER_ROLE}")
                    await conn.execute("SELECT set_config('pearl.org', %s, true)", (scope,))
                    cur = await conn.execute(f"SELECT count(*) FROM {table} {forged}", (told.org,))
                    row = await cur.fetchone()
                    assert row is not None
                    counts.append(row[0])
            assert counts[0] == 0 and counts[1] > 0, (table, counts)
