"""The governance flow end to end over HTTP against real NATS and PostgreSQL: a real scan of
a commit, a policy, a promotion gated by it, an exception and approvals that re-trigger the
gate automatically (the gatekeeper), promote, roll back, explain, and replay every decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.test_scans import sample
from tests.support.helpers import eventually, issue_key, make_org_and_project
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
COMMIT = "0123456789abcdef0123456789abcdef01234567"


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def promotion(stack: Stack, pid: str, position: int = 0) -> dict[str, Any]:
    return await ok(
        await stack.http.get(
            f"/v1/promotions/{pid}", params={"min_position": position}, headers=stack.admin
        )
    )


async def test_promotion_gate_exception_approvals_promote_rollback_replay(stack: Stack) -> None:
    http, admin = stack.http, stack.admin
    org, project, _ = await make_org_and_project(http, admin)
    operator = await issue_key(http, admin, org, "operator")
    approver_a = await issue_key(http, admin, org, "approver")
    approver_b = await issue_key(http, admin, org, "approver")
    base = f"/v1/projects/{project}"

    # An invalid policy is refused with the location of every error; nothing is recorded.
    bad = {"rules": [{"id": "x", "kind": "max_findings", "severity": "critical", "max": -1}]}
    r = await http.put(
        f"{base}/policies/staging", json={"policy": bad, "reason": "x"}, headers=admin
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "urn:pearl:problem:invalid-policy"
    assert r.json()["errors"][0]["location"] == "rules[0].max"

    # dev: no gate. staging: no high-or-worse finding, a fresh semgrep scan of the commit,
    # and one approver.
    staging = {
        "rules": [
            {"id": "no-medium", "kind": "max_findings", "severity": "medium", "max": 0},
            {"id": "semgrep", "kind": "required_scans", "scanners": ["semgrep"]},
            {"id": "one-approver", "kind": "approvals", "count": 1, "roles": ["approver"]},
        ]
    }
    v1 = await ok(
        await http.put(
            f"{base}/policies/staging", json={"policy": staging, "reason": "gate"}, headers=admin
        )
    )
    assert v1["version"] == 1 and v1["changed"] is True

    report = sample("semgrep-tornado-4.5.json")
    scan = await ok(
        await http.post(
            f"{base}/scans",
            content=report,
            params={"target": "tornado", "commit": COMMIT},
            headers=operator,
        ),
        202,
    )
    assert scan["commit"] == COMMIT
    await ok(
        await http.post(
            f"{base}/versions",
            json={"version": "4.5.0", "commit": COMMIT, "author": "human:alice"},
            headers=operator,
        ),
        201,
    )
    # Unknown version → 422; skipping an environment → 422; not live in dev → 409.
    r = await http.post(
        f"{base}/promotions", json={"version": "9.9", "to": "dev"}, headers=operator
    )
    assert r.status_code == 422
    r = await http.post(
        f"{base}/promotions",
        json={"version": "4.5.0", "to": "prod", "from": "dev"},
        headers=operator,
    )
    assert r.status_code == 422
    r = await http.post(
        f"{base}/promotions", json={"version": "4.5.0", "to": "staging"}, headers=operator
    )
    assert r.status_code == 409

    to_dev = await ok(
        await http.post(
            f"{base}/promotions", json={"version": "4.5.0", "to": "dev"}, headers=operator
        ),
        201,
    )
    assert to_dev["gate"]["result"] == "passed"
    await ok(await http.post(f"/v1/promotions/{to_dev['id']}/promote", headers=operator))

    to_staging = await ok(
        await http.post(
            f"{base}/promotions", json={"version": "4.5.0", "to": "staging"}, headers=operator
        ),
        201,
    )
    pid = to_staging["id"]
    assert to_staging["gate"]["result"] == "failed"
    r = await http.post(
        f"{base}/promotions", json={"version": "4.5.0", "to": "staging"}, headers=operator
    )
    assert r.status_code == 409  # one open promotion per environment

    explained = await ok(await http.get(f"/v1/promotions/{pid}/explain", headers=operator))
    failed = {rule["rule_id"]: rule for rule in explained["failed"]}
    assert set(failed) == {"no-medium", "one-approver"}
    high_ids = failed["no-medium"]["finding_ids"]
    assert failed["no-medium"]["observed"] == failed["no-medium"]["finding_count"] == 11
    assert "no-medium" in explained["text"]

    # Accept the risk of those findings; the gatekeeper re-evaluates on its own.
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    exc = await ok(
        await http.post(
            f"{base}/exceptions",
            json={
                "environment": "staging",
                "finding_ids": high_ids,
                "justification": "vendored code, not reachable from the web handlers",
                "compensating_controls": ["WAF rule 942100"],
                "expires_at": expires,
            },
            headers=operator,
        ),
        201,
    )
    r = await http.post(
        f"/v1/exceptions/{exc['id']}/decision", json={"decision": "approve"}, headers=operator
    )
    assert r.status_code == 403  # operators cannot decide exceptions
    await ok(
        await http.post(
            f"/v1/exceptions/{exc['id']}/decision", json={"decision": "approve"}, headers=approver_a
        )
    )

    async def awaiting() -> bool:
        return (await promotion(stack, pid))["status"] == "awaiting_approval"

    await eventually(awaiting)

    # Separation of duties: the requester cannot approve; an approver can.
    requests = (await ok(await http.get(f"{base}/approvals", headers=operator)))["items"]
    rid = next(r["id"] for r in requests if r["promotion_id"] == pid)
    r = await http.post(
        f"/v1/approvals/{rid}/decisions", json={"decision": "approve"}, headers=operator
    )
    assert r.status_code == 403
    decided = await ok(
        await http.post(
            f"/v1/approvals/{rid}/decisions", json={"decision": "approve"}, headers=approver_b
        )
    )
    assert decided["status"] == "approved"
    assert decided["gate"]["result"] == "passed"

    promoted = await ok(await http.post(f"/v1/promotions/{pid}/promote", headers=operator))
    envs = await ok(
        await http.get(
            f"{base}/environments",
            params={"min_position": promoted["position"]},
            headers=operator,
        )
    )
    live = {e["name"]: e.get("current_version") for e in envs["items"]}
    assert live == {"dev": "4.5.0", "staging": "4.5.0", "prod": None}

    # Every decision of this promotion replays to the same result and inputs digest.
    state = await promotion(stack, pid, promoted["position"])
    assert state["status"] == "promoted"
    assert [d["result"] for d in state["decisions"]][:1] == ["failed"]
    assert state["decisions"][-1]["result"] == "passed"
    for decision in state["decisions"]:
        replay = await ok(
            await http.get(
                f"/v1/promotions/{pid}/decisions/{decision['decision_id']}/replay", headers=admin
            )
        )
        assert replay["matches"] is True, replay

    # Time travel: the promotion as it was at its first decision.
    first = state["decisions"][0]
    then = await ok(
        await http.get(
            f"/v1/promotions/{pid}", params={"as_of": str(first["position"])}, headers=admin
        )
    )
    assert then["status"] == "failed"

    # Roll back staging: nothing earlier was live there, so it is refused with a clear 409.
    r = await http.post(
        f"{base}/environments/staging/rollback", json={"reason": "errors"}, headers=operator
    )
    assert r.status_code == 409
    history = await ok(await http.get(f"{base}/releases", headers=operator))
    assert [(h["environment"], h["kind"]) for h in history["items"]] == [
        ("dev", "promoted"),
        ("staging", "promoted"),
    ]


async def test_policy_versions_diff_and_baseline_tightening(stack: Stack) -> None:
    http, admin = stack.http, stack.admin
    org, project, _ = await make_org_and_project(http, admin)
    base_rule = {"id": "crit", "kind": "max_findings", "severity": "critical", "max": 1}
    await ok(
        await http.put(
            f"/v1/orgs/{org}/policies/prod",
            json={"policy": {"rules": [base_rule]}, "reason": "org floor"},
            headers=admin,
        )
    )
    looser = {**base_rule, "max": 3}
    r = await http.put(
        f"/v1/projects/{project}/policies/prod",
        json={"policy": {"rules": [looser]}, "reason": "loosen"},
        headers=admin,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["location"].startswith("rules[0]")
    for body in ({"rules": [{**base_rule, "max": 0}]}, {"rules": [{**base_rule, "max": 0}]}):
        await ok(
            await http.put(
                f"/v1/projects/{project}/policies/prod",
                json={"policy": body, "reason": "tighten"},
                headers=admin,
            )
        )
    versions = await ok(
        await http.get(f"/v1/projects/{project}/policies/prod/versions", headers=admin)
    )
    assert [v["version"] for v in versions["items"]] == [1]  # the same document twice: once
    effective = await ok(await http.get(f"/v1/projects/{project}/policies/prod", headers=admin))
    assert [(r["source"], r["max"]) for r in effective["rules"]] == [("project", 0)]
    await ok(
        await http.put(
            f"/v1/projects/{project}/policies/prod",
            json={"policy": {"rules": []}, "reason": "oops"},
            headers=admin,
        )
    )
    diff = await ok(
        await http.get(
            f"/v1/projects/{project}/policies/prod/diff",
            params={"from": 1, "to": 2},
            headers=admin,
        )
    )
    assert [c["op"] for c in diff["changes"]] == ["remove"]
    effective = await ok(await http.get(f"/v1/projects/{project}/policies/prod", headers=admin))
    assert [(r["source"], r["max"]) for r in effective["rules"]] == [("baseline", 1)]
