"""Generated hostile input at every entry point (issue 19): no 5xx, no poisoned history.

Every operation of the OpenAPI document `create_app` produces (so a new route is covered
without touching this test) and every bus command of the worker's table get strings from all of
Unicode (NUL, C0/C1 controls, lone surrogates, U+FFFF, RTL marks, 1 MB strings), deep and wide
nesting, wrong types and wrong content types, with and without a credential; in the body, the
query string and the path. `min_position` is drawn freely (below, at and far beyond the store
head, past 64 bits, not a number); report uploads also get reports nested 100,000 deep, 150,000
wide, real reports tainted with control characters, and not-JSON; bus bodies also get bytes
hostile to the decoder (nesting 100,000 deep, invalid UTF-8, numbers past any float or int64,
truncated JSON), spliced into any data field. Then: every HTTP refusal is problem+json with a
`type`, every bus refusal is in PEARL_DLQ with a reason (never a transient give-up), and the
projections reach the store head with every audit chain intact.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.api.openapi import openapi_document
from services.commands import ROUTES
from tests.conftest import samples_dir
from tests.support.health import assert_history_intact
from tests.support.helpers import eventually, make_org_and_project
from tests.support.hostile import (
    DEEP,
    HOSTILE_FRAGMENTS,
    body_for,
    bus_body,
    bus_json_value,
    bus_text,
    content_type,
    encode_json,
    fields_of,
    hostile_text,
    pick,
    position_value,
    query_value,
    report_body,
    taint,
    url_text,
)
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(own_stack: Stack) -> Stack:
    return own_stack


HTTP_EXAMPLES = 12  # per operation (~80 of them)
REPORT_EXAMPLES = 40  # for each route that streams a scanner report into the parsers
BUS_EXAMPLES = 8  # each example publishes one message to every command subject (~17)
#: Report uploads stream their own body into the report parsers: they get reports hostile in
#: shape and content (`report_body`) as well as everything else.
STREAMED = {"submitScan"}
#: Small real reports, to be tainted with hostile text.
SAMPLES = ["semgrep-pyyaml-3.13.json", "semgrep-pyyaml-3.13.sarif", "bandit-pyyaml-3.13.json"]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    path_params: dict[str, str]  # name -> "uuid" | "string"
    query_params: list[str]
    fields: list[str] | None  # None: no JSON body


def operations() -> list[Operation]:
    doc = openapi_document()
    components = doc.get("components", {}).get("schemas", {})
    found = []
    for path, item in sorted(doc["paths"].items()):
        for method, op in sorted(item.items()):
            params = op.get("parameters", [])
            path_params = {
                p["name"]: "uuid" if p.get("schema", {}).get("format") == "uuid" else "string"
                for p in params
                if p["in"] == "path"
            }
            query = [p["name"] for p in params if p["in"] == "query"]
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            fields = fields_of(body["schema"], components) if body else None
            found.append(
                Operation(method.upper(), path, op["operationId"], path_params, query, fields)
            )
    return found


OPERATIONS = operations()


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    body: bytes | None
    content_type: str | None
    auth: str  # "admin" | "none" | "garbage"
    operation_id: str


@dataclass
class Known:
    org: str
    project: str
    tokens: list[str]
    samples: list[bytes] = field(default_factory=list)
    turn: int = 0
    sent: int = 0
    seen: dict[str, set[str]] = field(default_factory=dict)  # operation -> problem types, 2xx


def query_for(name: str) -> st.SearchStrategy[Any]:
    return position_value if name == "min_position" else query_value


def request_for(op: Operation, known: Known) -> st.SearchStrategy[Request]:
    def segment(kind: str) -> st.SearchStrategy[str]:
        if kind == "uuid":
            real = st.sampled_from([known.project, str(uuid.uuid4())])
        else:
            real = st.sampled_from([known.org, "prod", "system"])
        return st.one_of(real, real, hostile_text.filter(lambda t: 0 < len(t) < 2000))

    def build(
        segments: dict[str, str],
        query: dict[str, Any],
        body: bytes | None,
        ct: str | None,
        auth: str,
    ) -> Request:
        path = op.path
        for name, value in segments.items():
            path = path.replace("{" + name + "}", url_text(value))
        pairs = [(name, url_text(value)) for name, value in query.items()]
        return Request(op.method, path, pairs, body, ct, auth, op.operation_id)

    body: st.SearchStrategy[bytes | None] = st.none()
    if op.fields is not None:
        body = body_for(op.fields)
    elif op.operation_id in STREAMED:
        body = st.one_of(body_for([]), report_body(known.samples), report_body(known.samples))
    elif op.method != "GET":
        body = st.one_of(st.none(), body_for([], deep=False))
    return st.builds(
        build,
        st.fixed_dictionaries({n: segment(k) for n, k in op.path_params.items()}),
        st.fixed_dictionaries({}, optional={n: query_for(n) for n in op.query_params}),
        body,
        content_type,
        st.sampled_from(["admin", "admin", "none", "garbage"]),
    )


PROBLEM = "urn:pearl:problem:"


def pinned_position(op: Operation) -> bool:
    """A read whose only path parameters PeaRL can fill with something that exists."""
    return (
        op.method == "GET"
        and "min_position" in op.query_params
        and set(op.path_params) <= {"org", "project_id"}
    )


def pinned(op: Operation, known: Known) -> list[Request]:
    """Examples every run sends: each probes one fix, with a credential and a real path."""
    path = op.path.replace("{org}", known.org).replace("{project_id}", known.project)
    found: list[Request] = []
    if pinned_position(op):
        for position in (2**70, 10**12):
            query = [("min_position", str(position))]
            found.append(Request(op.method, path, query, None, None, "admin", op.operation_id))
    if op.operation_id in STREAMED and known.samples:
        deep = b'{"runs":' + b"[" * DEEP + b"]" * DEEP + b"}"
        tainted = encode_json(taint(json.loads(known.samples[0]), "\x00\x1b[31m\u202e\x85", False))
        for body, ct in (
            (deep, "application/json"),
            (deep, "text/plain"),
            (tainted, "application/json"),
        ):
            found.append(Request(op.method, path, [], body, ct, "admin", op.operation_id))
    return found


def check(request: Request, response: httpx.Response) -> None:
    where = f"{request.method} {request.path} ({request.operation_id})"
    assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        ct = response.headers.get("content-type", "")
        assert ct.startswith("application/problem+json"), f"{where}: {ct} {response.text[:300]}"
        problem = response.json()
        assert str(problem.get("type", "")).startswith("urn:pearl:problem:"), where
        assert problem.get("status") == response.status_code, where


async def send(stack: Stack, known: Known, request: Request) -> httpx.Response:
    known.sent += 1
    headers: dict[str, str] = {}
    if request.auth == "admin":
        known.turn += 1
        headers["Authorization"] = f"Bearer {known.tokens[known.turn % len(known.tokens)]}"
    elif request.auth == "garbage":
        headers["Authorization"] = "Bearer pearl_" + uuid.uuid4().hex
    if request.content_type:
        headers["Content-Type"] = request.content_type
    # a new address for each anonymous caller: the brute-force limit is per address
    a, b, c = uuid.uuid4().bytes[:3]
    address = f"10.{a}.{b}.{c}"
    transport = httpx.ASGITransport(app=stack.http._transport.app, client=(address, 4000))  # type: ignore[attr-defined]
    query = "&".join(f"{k}={v}" for k, v in request.query)
    url = f"http://pearl.test{request.path}" + (f"?{query}" if query else "")
    async with httpx.AsyncClient(transport=transport, timeout=60) as client:
        return await client.request(
            request.method, httpx.URL(url), content=request.body, headers=headers
        )


async def test_generated_hostile_http_input_never_5xx_nor_poisons_the_history(stack: Stack):
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    tokens = [await asyncio.to_thread(stack.app.bootstrap_admin_key, f"fuzz {i}") for i in range(4)]
    found = [samples_dir() / name for name in SAMPLES]
    known = Known(org, project, tokens, [p.read_bytes() for p in found if p.exists()])
    loop = asyncio.get_running_loop()

    def fuzz(op: Operation) -> None:
        def operation(request: Request) -> None:
            response = asyncio.run_coroutine_threadsafe(send(stack, known, request), loop)
            answer = response.result(120)
            check(request, answer)
            seen = answer.json().get("type") if answer.status_code >= 400 else "2xx"
            known.seen.setdefault(op.operation_id, set()).add(str(seen))

        test = given(request_for(op, known))(operation)
        for request in pinned(op, known):
            test = example(request)(test)
        settings(
            max_examples=REPORT_EXAMPLES if op.operation_id in STREAMED else HTTP_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )(test)()

    def each_operation() -> None:
        for op in OPERATIONS:
            fuzz(op)

    await asyncio.to_thread(each_operation)
    assert known.sent >= 2 * len(OPERATIONS), known.sent  # hypothesis really sent them
    # the pinned examples reached the fixes they probe (not refused earlier for another reason)
    beyond = {op for op, types in known.seen.items() if PROBLEM + "position-beyond-head" in types}
    assert beyond >= {op.operation_id for op in OPERATIONS if pinned_position(op)}, beyond
    for op_id in STREAMED:
        assert {PROBLEM + "report-too-complex", "2xx"} <= known.seen[op_id], known.seen[op_id]
    await assert_history_intact(stack, timeout=60)


# --- the bus ------------------------------------------------------------------------------


def scan_envelope(project: str) -> st.SearchStrategy[bytes]:
    """`scan.submit` for a real project, its inline report hostile to the decoder or parsers."""
    reports = st.one_of(pick(HOSTILE_FRAGMENTS), report_body([]))
    return st.builds(
        lambda ident, report: (
            b'{"id": "%s", "data": {"project_id": "%s", "report": %s}}'
            % (str(ident).encode(), project.encode(), report)
        ),
        st.uuids(),
        reports,
    )


def envelope_for(fields: list[str]) -> st.SearchStrategy[bytes]:
    data = st.fixed_dictionaries({}, optional={name: bus_json_value for name in fields})
    ident = st.one_of(st.uuids().map(str), bus_text)
    envelope = st.fixed_dictionaries(
        {"id": ident, "data": data},
        optional={"source": bus_text, "traceparent": bus_text, "time": bus_json_value},
    )
    return st.one_of(
        envelope.map(lambda e: json.dumps(e).encode()),
        envelope.map(lambda e: json.dumps(e, ensure_ascii=False).encode("utf-8", "surrogatepass")),
        bus_json_value.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=64),
        bus_body(fields),
        bus_body(fields),
    )


BUS_COMMANDS = sorted(ROUTES.items())


async def test_generated_hostile_bus_commands_are_applied_or_dead_lettered(stack: Stack):
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    js = stack.nc.jetstream()
    loop = asyncio.get_running_loop()
    published: list[str] = []

    async def publish(subject: str, body: bytes, auth: str) -> None:
        if len(body) > stack.nc.max_payload:
            return  # the client refuses it: it never reaches PeaRL
        marker = str(uuid.uuid4())
        headers = {"Pearl-Fuzz": marker}
        if auth == "admin":
            headers["Authorization"] = f"Bearer {stack.admin_token}"
        elif auth == "garbage":
            headers["Authorization"] = "Bearer pearl_" + uuid.uuid4().hex
        await js.publish(subject, body, headers=headers)
        published.append(marker)

    messages = st.tuples(
        *(
            st.tuples(
                st.sampled_from([org, org, "system", "no-such-org"]),
                st.one_of(envelope_for(list(route.body.__struct_fields__)), scan_envelope(project))
                if (aggregate, command) == ("scan", "submit")
                else envelope_for(list(route.body.__struct_fields__)),
                st.sampled_from(["admin", "admin", "none", "garbage"]),
            )
            for (aggregate, command), route in BUS_COMMANDS
        )
    )

    @settings(
        max_examples=BUS_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(messages)
    def each_command_once(drawn: tuple[tuple[str, bytes, str], ...]) -> None:
        for ((aggregate, command), _), (subject_org, body, auth) in zip(
            BUS_COMMANDS, drawn, strict=True
        ):
            subject = stack.subjects.command(subject_org, aggregate, command)
            asyncio.run_coroutine_threadsafe(publish(subject, body, auth), loop).result(30)
        unknown = stack.subjects.command(org, "finding", "obliterate")
        asyncio.run_coroutine_threadsafe(publish(unknown, b"{}", "admin"), loop).result(30)

    await asyncio.to_thread(each_command_once)
    assert len(published) >= 2 * len(BUS_COMMANDS), len(published)

    consumer = f"{stack.subjects.root}-worker"

    async def drained() -> bool:
        info = await js.consumer_info(stack.subjects.commands_stream, consumer)
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(drained, timeout=90, interval=0.2)
    parked = await _dead_letters(stack, set(published))
    assert parked, "hostile commands were all accepted: the refusals are not reaching the DLQ"
    for marker, headers in parked.items():
        assert headers.get("Pearl-Dlq-Reason"), marker
        assert headers.get("Pearl-Dlq-Code"), marker
        # a refusal is permanent and immediate, never a bug retried until the worker gave up
        assert not headers["Pearl-Dlq-Reason"].startswith("gave up"), headers
    # bodies 100,000 deep reached the worker's decoder and were parked with their reason
    reasons = [headers["Pearl-Dlq-Reason"] for headers in parked.values()]
    assert any("nested too deeply" in reason for reason in reasons), reasons[:20]
    await assert_history_intact(stack, timeout=60)


async def _dead_letters(stack: Stack, markers: set[str]) -> dict[str, dict[str, str]]:
    js = stack.nc.jetstream()
    sub = await js.pull_subscribe(stack.subjects.all_dlq, stream=stack.subjects.dlq_stream)
    found: dict[str, dict[str, str]] = {}
    try:
        while True:
            try:
                batch = await sub.fetch(500, timeout=1.0)
            except TimeoutError:
                break
            for msg in batch:
                headers = dict(msg.headers or {})
                if headers.get("Pearl-Fuzz") in markers:
                    found[headers["Pearl-Fuzz"]] = headers
    finally:
        await sub.unsubscribe()
    return found
