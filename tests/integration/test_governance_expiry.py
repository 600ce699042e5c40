"""The scheduler's governance jobs against the real stack, time driven by the app's clock:
an approval request and an exception expire, an overdue finding is marked, and the gate of
the open promotion is re-evaluated by the gatekeeper because of it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from projections.queries import wait_for_position
from services.governance_jobs import Expiries
from tests.support.helpers import eventually, issue_key, make_org_and_project
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
POLICY = {"rules": [{"id": "sign", "kind": "approvals", "count": 1, "ttl_hours": 1}]}


async def test_expiries_are_issued_by_the_scheduler_jobs(stack: Stack) -> None:
    http, admin = stack.http, stack.admin
    org, project, _ = await make_org_and_project(http, admin)
    operator = await issue_key(http, admin, org, "operator")
    approver = await issue_key(http, admin, org, "approver")
    base = f"/v1/projects/{project}"
    r = await http.put(
        f"{base}/policies/dev", json={"policy": POLICY, "reason": "x"}, headers=admin
    )
    assert r.status_code == 200, r.text
    r = await http.post(
        f"{base}/findings",
        json={"tool": "t", "rule_id": "r", "title": "t", "severity": "critical"},
        headers=operator,
    )
    finding = r.json()["id"]
    await http.post(f"{base}/versions", json={"version": "1", "commit": "c" * 40}, headers=operator)
    promotion = (
        await http.post(f"{base}/promotions", json={"version": "1", "to": "dev"}, headers=operator)
    ).json()
    assert promotion["gate"]["result"] == "awaiting_approval"
    exc = await http.post(
        f"{base}/exceptions",
        json={
            "rule_id": "r",
            "justification": "short-lived acceptance",
            "expires_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
        },
        headers=operator,
    )
    exception_id = exc.json()["id"]
    await http.post(
        f"/v1/exceptions/{exception_id}/decision", json={"decision": "approve"}, headers=approver
    )
    real: Callable[[], datetime] = stack.app.clock
    jobs = Expiries(stack.app, stack.pool)
    position = stack.app.position
    assert await wait_for_position(stack.pool, position, 10)

    async def status(path: str) -> str:
        return str((await http.get(path, headers=admin)).json()["status"])

    # The jobs look at every org: other tests' leftovers may be due too, so this test asserts
    # on its own approval, exception and finding.
    await jobs.approvals()
    await jobs.exceptions()
    await jobs.slas()
    assert await status(f"/v1/approvals/{promotion['approval_request_id']}") == "pending"
    assert await status(f"/v1/exceptions/{exception_id}") == "active"
    try:
        stack.app.clock = lambda: real() + timedelta(days=9)
        assert await jobs.approvals() >= 1
        assert await jobs.exceptions() >= 1
        assert await jobs.slas() >= 1  # the critical finding's 7-day SLA passed
    finally:
        stack.app.clock = real

    assert await status(f"/v1/approvals/{promotion['approval_request_id']}") == "expired"
    await eventually(lambda: _is(status(f"/v1/exceptions/{exception_id}"), "expired"))
    finding_events = (await http.get(f"/v1/findings/{finding}", headers=admin)).json()["history"]
    assert finding_events[-1]["type"] == "pearl.finding.sla_breached.v1"

    async def decisions() -> int:
        body = (await http.get(f"/v1/promotions/{promotion['id']}", headers=admin)).json()
        return len(body["decisions"])

    await eventually(lambda: _at_least(decisions(), 2))  # the gatekeeper re-evaluated


async def _is(value: object, expected: str) -> bool:
    return await value == expected  # type: ignore[misc]


async def _at_least(value: object, n: int) -> bool:
    return await value >= n  # type: ignore[misc,operator]
