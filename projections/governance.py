"""Governance read models: policies and their versions, release versions, test runs, promotions
and their gate decisions, environments and their releases, approval requests, exceptions, and
the project profile (a column of project_view).

Every update is guarded by the aggregate version last applied (`version_no`, `version`), every
insert by its key, so applying an event twice changes nothing; every value comes from the
event, so a rebuild gives identical rows.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from contracts.envelope import EventEnvelope, event_type
from projections.base import Batch, Cursor, Projection, update_once

POLICY = "gate_policy"
VERSION = "release_version"
TEST_RUN = "test_run"
PROMOTION = "promotion"
ENVIRONMENT = "deploy_environment"
APPROVAL = "approval_request"
EXCEPTION = "risk_exception"


# --- policies ------------------------------------------------------------------------------------


async def _policy_created(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO gate_policy_view (id, org, project_id, environment, created_by, version_no,"
        " position) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            env.org,
            d.get("project_id"),
            d["environment"],
            env.actor,
            env.aggregateversion,
            env.position,
        ),
    )


async def _policy_revised(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO policy_version_view (policy_id, version, org, project_id, environment,"
        " document, digest, reason, author, created_at, position)"
        " SELECT id, %s, org, project_id, environment, %s, %s, %s, %s, %s, %s"
        " FROM gate_policy_view WHERE id = %s ON CONFLICT (policy_id, version) DO NOTHING",
        (
            d["version"],
            Jsonb(d["document"]),
            d["digest"],
            d["reason"],
            env.actor,
            d["at"],
            env.position,
            env.aggregateid,
        ),
    )
    await update_once(
        cur,
        "gate_policy_view",
        "current_version = %s, current_digest = %s, updated_at = %s",
        env,
        d["version"],
        d["digest"],
        d["at"],
    )


# --- versions and test runs ----------------------------------------------------------------------


async def _version_registered(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO release_version_view (id, org, project_id, version, commit_sha,"
        " artifact_digest, digest, author, registered_at, registered_by, position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            env.org,
            d["project_id"],
            d["release"],
            d["commit"],
            d.get("artifact_digest"),
            d["digest"],
            d.get("author"),
            d["registered_at"],
            env.actor,
            env.position,
        ),
    )


async def _tests_submitted(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO test_run_view (id, org, project_id, commit_sha, suite, passed, failed,"
        " skipped, coverage, submitted_at, submitted_by, position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            env.org,
            d["project_id"],
            d["commit"],
            d["suite"],
            d["passed"],
            d["failed"],
            d["skipped"],
            d.get("coverage"),
            d["submitted_at"],
            env.actor,
            env.position,
        ),
    )


# --- promotions and gate decisions ---------------------------------------------------------------


async def _promotion_requested(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO promotion_view (id, org, project_id, version, commit_sha, version_digest,"
        " from_environment, to_environment, author, reason, status, requested_by, requested_at,"
        " version_no, position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending', %s, %s, %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            env.org,
            d["project_id"],
            d["release"],
            d["commit"],
            d["version_digest"],
            d.get("from_environment"),
            d["to_environment"],
            d.get("author"),
            d["reason"],
            env.actor,
            d["requested_at"],
            env.aggregateversion,
            env.position,
        ),
    )


async def _gate_evaluated(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    """One decision row (seq: the promotion's n-th evaluation), then the promotion's status.

    The decision is inserted only while the promotion row has not seen this event yet, so its
    `seq` (evaluations so far + 1) is computed exactly once, in store order: the same on rebuild.
    """
    d = env.data
    await cur.execute(
        "INSERT INTO gate_decision_view (decision_id, promotion_id, org, project_id, environment,"
        " seq, result, inputs_digest, policy, rules, evaluated_at, as_of_position, trigger,"
        " actor, position)"
        " SELECT %s, id, org, project_id, to_environment, evaluations + 1, %s, %s, %s, %s, %s,"
        " %s, %s, %s, %s FROM promotion_view WHERE id = %s AND version_no < %s"
        " ON CONFLICT (decision_id) DO NOTHING",
        (
            d["decision_id"],
            d["result"],
            d["inputs_digest"],
            Jsonb(d["policy"]),
            Jsonb(d["rules"]),
            d["evaluated_at"],
            d["as_of_position"],
            d["trigger"],
            env.actor,
            env.position,
            env.aggregateid,
            env.aggregateversion,
        ),
    )
    await update_once(
        cur,
        "promotion_view",
        "status = %s, evaluations = evaluations + 1, last_decision_id = %s, last_result = %s,"
        " last_evaluated_at = %s",
        env,
        d["result"],
        d["decision_id"],
        d["result"],
        d["evaluated_at"],
    )


async def _approval_requested_for(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await update_once(
        cur, "promotion_view", "approval_request_id = %s", env, env.data["request_id"]
    )


async def _promoted(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await update_once(
        cur,
        "promotion_view",
        "status = 'promoted', closed_at = %s, closed_by = %s",
        env,
        env.data["at"],
        env.actor,
    )


async def _promotion_rejected(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await update_once(
        cur,
        "promotion_view",
        "status = 'rejected', closed_at = %s, close_reason = %s, closed_by = %s",
        env,
        d["at"],
        d["reason"],
        env.actor,
    )


# --- environments and releases -------------------------------------------------------------------


async def _environmentupdate_once(cur: Cursor, env: EventEnvelope, sets: str, *values: Any) -> None:
    await update_once(cur, "environment_view", sets, env, *values, column="version")


async def _environment_opened(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO environment_view (id, org, project_id, name, version, position)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (env.aggregateid, env.org, d["project_id"], d["name"], env.aggregateversion, env.position),
    )


async def _environment_promotion_opened(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await _environmentupdate_once(cur, env, "pending_promotion_id = %s", env.data["promotion_id"])


async def _environment_promotion_closed(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await _environmentupdate_once(cur, env, "pending_promotion_id = NULL")


async def _release(
    cur: Cursor,
    env: EventEnvelope,
    kind: str,
    version: str,
    digest: str,
    commit: str,
    promotion_id: str | None,
    reason: str | None,
) -> None:
    """The environment's history row for this event (`from_version`: what was live before)."""
    await cur.execute(
        "INSERT INTO release_view (environment_id, seq, org, project_id, environment, kind,"
        " version, digest, commit_sha, promotion_id, from_version, reason, at, actor, position)"
        " SELECT id, %s, org, project_id, name, %s, %s, %s, %s, %s, current_version, %s, %s, %s,"
        " %s FROM environment_view WHERE id = %s AND version < %s"
        " ON CONFLICT (environment_id, seq) DO NOTHING",
        (
            env.aggregateversion,
            kind,
            version,
            digest,
            commit,
            promotion_id,
            reason,
            env.data["at"],
            env.actor,
            env.position,
            env.aggregateid,
            env.aggregateversion,
        ),
    )


async def _environment_promoted(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await _release(
        cur, env, "promoted", d["release"], d["digest"], d["commit"], d["promotion_id"], None
    )
    await _environmentupdate_once(
        cur,
        env,
        "current_version = %s, current_digest = %s, current_commit = %s, live_since = %s,"
        " pending_promotion_id = CASE WHEN pending_promotion_id = %s::uuid THEN NULL"
        " ELSE pending_promotion_id END",
        d["release"],
        d["digest"],
        d["commit"],
        d["at"],
        d["promotion_id"],
    )


async def _environment_rolled_back(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await _release(
        cur, env, "rolled_back", d["to_release"], d["to_digest"], d["to_commit"], None, d["reason"]
    )
    await _environmentupdate_once(
        cur,
        env,
        "current_version = %s, current_digest = %s, current_commit = %s, live_since = %s,"
        " failed_digests = failed_digests || %s",
        d["to_release"],
        d["to_digest"],
        d["to_commit"],
        d["at"],
        Jsonb([d["from_digest"]]),
    )


# --- approval requests ---------------------------------------------------------------------------


async def _approval_requested(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO approval_view (id, org, project_id, promotion_id, number, environment,"
        " version, version_digest, required_count, roles, requested_by, author, requested_at,"
        " expires_at, status, version_no, position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending', %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            env.org,
            d["project_id"],
            d["promotion_id"],
            d["number"],
            d["environment"],
            d["release"],
            d["version_digest"],
            d["required_count"],
            Jsonb(d["roles"]),
            d["requested_by"],
            d.get("author"),
            d["requested_at"],
            d["expires_at"],
            env.aggregateversion,
            env.position,
        ),
    )


async def _approval_decided(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    """Append the decision; a rejection rejects, enough approvals approve (domain/approval.py)."""
    d = env.data
    entry = {
        "actor": env.actor,
        "roles": d["roles"],
        "decision": d["decision"],
        "reason": d["reason"],
        "at": d["at"],
    }
    approve = 1 if d["decision"] == "approve" else 0
    await update_once(
        cur,
        "approval_view",
        "decisions = decisions || %s, approvals = approvals + %s,"
        " status = CASE WHEN %s THEN 'rejected'"
        " WHEN approvals + %s >= required_count THEN 'approved' ELSE status END",
        env,
        Jsonb([entry]),
        approve,
        d["decision"] == "reject",
        approve,
    )


async def _approval_commented(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    entry = {"actor": env.actor, "text": d["text"], "at": d["at"]}
    await update_once(cur, "approval_view", "comments = comments || %s", env, Jsonb([entry]))


async def _approval_expired(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await update_once(cur, "approval_view", "status = 'expired'", env)


async def _approval_voided(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await update_once(cur, "approval_view", "status = 'voided'", env)


# --- exceptions ----------------------------------------------------------------------------------


async def _exception_requested(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await cur.execute(
        "INSERT INTO exception_view (id, org, project_id, environment, finding_ids, rule_id, cwe,"
        " justification, compensating_controls, requested_by, requested_at, expires_at, status,"
        " version_no, position)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'requested', %s, %s)"
        " ON CONFLICT (id) DO NOTHING",
        (
            env.aggregateid,
            env.org,
            d["project_id"],
            d.get("environment"),
            Jsonb(d["finding_ids"]),
            d.get("rule_id"),
            d.get("cwe"),
            d["justification"],
            Jsonb(d["compensating_controls"]),
            env.actor,
            d["requested_at"],
            d["expires_at"],
            env.aggregateversion,
            env.position,
        ),
    )


async def _exception_approved(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await update_once(
        cur,
        "exception_view",
        "status = 'active', approved_by = %s, decided_at = %s",
        env,
        env.actor,
        env.data["at"],
    )


async def _exception_rejected(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    d = env.data
    await update_once(
        cur,
        "exception_view",
        "status = 'rejected', reason = %s, decided_at = %s",
        env,
        d["reason"],
        d["at"],
    )


async def _exception_revoked(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await update_once(
        cur, "exception_view", "status = 'revoked', reason = %s", env, env.data["reason"]
    )


async def _exception_expired(cur: Cursor, env: EventEnvelope, batch: Batch) -> None:
    await update_once(cur, "exception_view", "status = 'expired'", env)


PROJECTION = Projection(
    name="governance",
    tables=(
        "gate_policy_view",
        "policy_version_view",
        "release_version_view",
        "test_run_view",
        "promotion_view",
        "gate_decision_view",
        "environment_view",
        "release_view",
        "approval_view",
        "exception_view",
    ),
    handlers={
        event_type(POLICY, "created"): _policy_created,
        event_type(POLICY, "revised"): _policy_revised,
        event_type(VERSION, "registered"): _version_registered,
        event_type(TEST_RUN, "submitted"): _tests_submitted,
        event_type(PROMOTION, "requested"): _promotion_requested,
        event_type(PROMOTION, "gate_evaluated"): _gate_evaluated,
        event_type(PROMOTION, "approval_requested"): _approval_requested_for,
        event_type(PROMOTION, "promoted"): _promoted,
        event_type(PROMOTION, "rejected"): _promotion_rejected,
        event_type(ENVIRONMENT, "opened"): _environment_opened,
        event_type(ENVIRONMENT, "promotion_opened"): _environment_promotion_opened,
        event_type(ENVIRONMENT, "promotion_closed"): _environment_promotion_closed,
        event_type(ENVIRONMENT, "promoted"): _environment_promoted,
        event_type(ENVIRONMENT, "rolled_back"): _environment_rolled_back,
        event_type(APPROVAL, "requested"): _approval_requested,
        event_type(APPROVAL, "decided"): _approval_decided,
        event_type(APPROVAL, "commented"): _approval_commented,
        event_type(APPROVAL, "expired"): _approval_expired,
        event_type(APPROVAL, "voided"): _approval_voided,
        event_type(EXCEPTION, "requested"): _exception_requested,
        event_type(EXCEPTION, "approved"): _exception_approved,
        event_type(EXCEPTION, "rejected"): _exception_rejected,
        event_type(EXCEPTION, "revoked"): _exception_revoked,
        event_type(EXCEPTION, "expired"): _exception_expired,
    },
)
