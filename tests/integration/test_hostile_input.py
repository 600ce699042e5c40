"""Regression tests of issue 19's examples: no input can hurt the history, none is a 5xx.

Each case also checks the history afterwards: the projections reach the store head and the
audit chains verify (a stored NUL used to stop every projection of every org for good).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec
import pytest

from contracts.commands import RecordFinding
from domain.access import AccessDenial
from domain.errors import UnstorableText
from domain.kernel import Idempotency
from services.api.guard import MAX_JSON_DEPTH, json_too_deep
from tests.support.health import assert_history_intact, store_head
from tests.support.helpers import eventually, finding_body, make_org_and_project
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["type"] == f"urn:pearl:problem:{code}"
    assert body["status"] == status
    return body


async def test_nul_org_in_path_without_credentials_is_refused_and_projections_go_on(stack: Stack):
    before = store_head(stack)
    r = await stack.http.get("/v1/orgs/x%00/projects")
    assert_problem(r, 400, "invalid-request")
    r = await stack.http.get("/v1/orgs/x%00/projects", headers=stack.admin)
    assert_problem(r, 400, "invalid-request")
    assert store_head(stack) == before
    # and the projections still follow new events
    await make_org_and_project(stack.http, stack.admin)
    await assert_history_intact(stack)


async def test_a_denial_is_recorded_with_hostile_text_escaped_and_projects(stack: Stack):
    before = store_head(stack)
    stack.app.record_denial(
        "system", "anonymous:\x00", "GET /v1/orgs/x\x00\ud800/p", "/x\x00", "no\x00", "x", "http"
    )
    assert store_head(stack) == before + 1
    await assert_history_intact(stack)
    r = await stack.http.get(
        "/v1/audit", params={"org": "system", "cursor": before, "limit": 10}, headers=stack.admin
    )
    assert r.status_code == 200, r.text
    actions = [e["data"].get("action") for e in r.json()["items"] if e.get("data")]
    assert "GET /v1/orgs/x\\u0000\\ud800/p" in actions


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "a\u0000b"),
        ("title", "a\nb"),
        ("title", "a\u0085b"),
        ("rule_id", "r\u0000"),
        ("message", "a\u0000b"),
        ("message", "a\u0007b"),
        ("path", "src/\u009b.py"),
        ("cwe", ["CWE-79\u0000"]),
    ],
    ids=[
        "nul-title",
        "newline-title",
        "c1-title",
        "nul-rule",
        "nul-message",
        "bel-message",
        "c1-path",
        "nul-in-list",
    ],
)
async def test_control_characters_in_finding_fields_are_refused(
    stack: Stack, field: str, value: Any
):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    before = store_head(stack)
    r = await stack.http.post(
        f"/v1/projects/{project}/findings", json=finding_body(**{field: value}), headers=stack.admin
    )
    body = assert_problem(r, 400, "invalid-request")
    assert "regex" not in body["detail"]  # said in words
    assert store_head(stack) == before


async def test_free_text_keeps_tabs_and_newlines_and_all_of_unicode(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    message = "line 1\n\tline 2\r\n\u202eRTL\u200f \uffff \U0001f600 \u00e9"
    r = await stack.http.post(
        f"/v1/projects/{project}/findings",
        json=finding_body(message=message, title="T\u00eftle \u202e\uffff"),
        headers=stack.admin,
    )
    assert r.status_code == 201, r.text
    await assert_history_intact(stack)
    r = await stack.http.get(f"/v1/findings/{r.json()['id']}", headers=stack.admin)
    assert r.json()["details"]["message"] == message


def test_the_store_refuses_any_event_holding_nul_or_a_lone_surrogate_whatever_the_caller(
    stack: Stack,
):
    """Defence in depth: an event built without any validation still cannot poison the store."""
    admin = stack.app.authenticate(stack.admin_token)
    good = msgspec.convert(finding_body(), RecordFinding)
    before = store_head(stack)
    for text in ("a\x00b", "a\ud800b", "\\\x00"):
        unchecked = AccessDenial(
            org="system",
            action=text,
            resource="r",
            reason="x",
            code="c",
            channel="http",
            at=stack.app.now(),
            actor="tests",
        )
        with pytest.raises(UnstorableText):
            stack.app.save(unchecked)
    with pytest.raises(UnstorableText):
        stack.app.record_finding(admin, uuid.uuid4(), good, Idempotency("k\x00", "h"))
    assert store_head(stack) == before
    # text that merely looks like an escape is stored as it is
    lookalike = AccessDenial(
        org="system",
        action="\\u0000 \\\\u0000",
        resource="r",
        reason="x",
        code="c",
        channel="http",
        at=stack.app.now(),
        actor="tests",
    )
    stack.app.save(lookalike)
    assert store_head(stack) == before + 1


async def test_store_guard_answers_400_over_http(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    before = store_head(stack)
    r = await stack.http.post(
        f"/v1/projects/{project}/findings",
        json=finding_body(),
        headers={**stack.admin, "Idempotency-Key": "key\x00"},
    )
    assert_problem(r, 400, "unstorable-text")
    assert store_head(stack) == before


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_100, 100_000])
async def test_deeply_nested_json_on_ordinary_routes_is_400(stack: Stack, depth: int):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    nested = "[" * depth + "]" * depth
    routes = [
        ("POST", f"/v1/projects/{project}/findings", f'{{"tool": {nested}}}'),
        ("POST", "/v1/orgs", nested),
        ("PUT", f"/v1/projects/{project}/profile", f'{{"owner_team": {nested}}}'),
    ]
    for method, path, body in routes:
        r = await stack.http.request(
            method,
            path,
            content=body.encode(),
            headers={**stack.admin, "Content-Type": "application/json"},
        )
        assert_problem(r, 400, "invalid-request")


def test_depth_check_counts_only_structure():
    assert not json_too_deep(
        b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}'
    )
    assert not json_too_deep(json.dumps({"k": [[1, 2]] * 10_000, "s": '\\"[' * 100}).encode())
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert not json_too_deep(deep.encode())
    assert json_too_deep(("[" + deep + "]").encode())
    assert json_too_deep(b"[" * 1_000_000)


async def test_c1_control_character_in_a_policy_is_a_policy_error_not_500(stack: Stack):
    org, _, _ = await make_org_and_project(stack.http, stack.admin)
    policy = {"rules": [{"kind": "bogus\u009f", "id": "x"}]}
    r = await stack.http.put(
        f"/v1/orgs/{org}/policies/prod",
        json={"policy": policy, "reason": "test"},
        headers=stack.admin,
    )
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    "query",
    [
        "/v1/audit?actor=%00",
        "/v1/audit?type=%00",
        "/v1/audit?org=%00",
        "/v1/projects/{p}/findings?path_prefix=%00",
        "/v1/projects/{p}/findings?tool=%00",
        "/v1/projects/{p}/findings?cwe=%C2%9B",
        "/v1/projects/{p}/tasks?holder=%00",
        "/v1/projects/{p}/state?as_of=%00",
    ],
)
async def test_nul_in_query_filters_is_400(stack: Stack, query: str):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    for headers in (stack.admin, {}):
        r = await stack.http.get(query.replace("{p}", project), headers=headers)
        assert_problem(r, 400, "invalid-request")


async def test_numbers_in_queries_out_of_range_are_never_5xx(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    for query in (
        "/v1/audit?cursor=99999999999999999999",
        f"/v1/projects/{project}/scans?cursor=99999999999999999999",
        f"/v1/projects/{project}/tasks?cursor=-99999999999999999999",
        f"/v1/projects/{project}/state?as_of=99999999999999999999",
        f"/v1/projects/{project}/state?as_of=%C2%B2",
    ):
        r = await stack.http.get(query, headers=stack.admin)
        assert r.status_code < 500, (query, r.text)
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith(PROBLEM)


async def test_a_body_that_is_not_json_is_415_on_json_routes(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    before = store_head(stack)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**stack.admin}
        if content_type:
            headers["Content-Type"] = content_type
        r = await stack.http.post(
            f"/v1/projects/{project}/findings",
            content=json.dumps(finding_body()).encode(),
            headers=headers,
        )
        assert_problem(r, 415, "unsupported-media-type")
    assert store_head(stack) == before
    r = await stack.http.post(
        f"/v1/projects/{project}/findings",
        content=json.dumps(finding_body()).encode(),
        headers={**stack.admin, "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201, r.text


async def test_report_uploads_still_take_any_content_type(stack: Stack):
    _, project, _ = await make_org_and_project(stack.http, stack.admin)
    report = {"version": "1.0", "results": [], "errors": []}  # an empty Semgrep report
    for content_type in ("text/plain", "application/octet-stream", "application/json"):
        r = await stack.http.post(
            f"/v1/projects/{project}/scans",
            params={"tool": "semgrep", "target": content_type.replace("/", "-")},
            content=json.dumps(report).encode(),
            headers={**stack.admin, "Content-Type": content_type},
        )
        assert r.status_code == 202, r.text


async def test_bus_commands_with_unstorable_text_are_dead_lettered(stack: Stack):
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    js = stack.nc.jetstream()
    subject = stack.subjects.command(org, "finding", "record")
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    markers = []
    before = store_head(stack)
    bodies = [
        {
            "id": str(uuid.uuid4()),
            "data": {**finding_body(title="a\u0000b"), "project_id": project},
        },
        {"id": "cmd\u0000" + uuid.uuid4().hex, "data": {**finding_body(), "project_id": project}},
    ]
    for body in bodies:
        marker = str(uuid.uuid4())
        markers.append(marker)
        await js.publish(
            subject, json.dumps(body).encode(), headers={**headers, "Pearl-Test": marker}
        )

    sub = await js.pull_subscribe(stack.subjects.all_dlq, stream=stack.subjects.dlq_stream)
    seen: dict[str, str] = {}

    async def parked() -> bool:
        try:
            for m in await sub.fetch(100, timeout=0.5):
                seen[(m.headers or {}).get("Pearl-Test", "")] = m.headers["Pearl-Dlq-Code"]
        except Exception:
            pass
        return all(marker in seen for marker in markers)

    try:
        await eventually(parked)
    finally:
        await sub.unsubscribe()
    assert [seen[m] for m in markers] == ["invalid-input", "invalid-input"]
    assert store_head(stack) == before
    await assert_history_intact(stack)
