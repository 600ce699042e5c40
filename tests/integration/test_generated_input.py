"""Generated hostile input at every entry point (issue 19): no 5xx, no poisoned history.

Every operation of the OpenAPI document `create_app` produces (so a new route is covered
without touching this test) and every bus command of the worker's table get strings from
all of Unicode (NUL, C0/C1 controls, lone surrogates, U+FFFF, RTL marks, 1 MB strings),
deep and wide nesting, wrong types and wrong content types, with and without a credential;
in the body, the query string and the path. Then: every HTTP refusal is problem+json with
a `type`, every bus refusal is in PEARL_DLQ with a reason (never a transient give-up), and
the projections reach the store head with every audit chain intact.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services import telemetry
from services.api.openapi import openapi_document
from services.commands import ROUTES
from tests.conftest import provisioned
from tests.support.health import assert_history_intact
from tests.support.helpers import eventually, make_org_and_project
from tests.support.hostile import (
    body_for,
    bus_json_value,
    bus_text,
    content_type,
    fields_of,
    hostile_text,
    query_value,
    url_text,
)
from tests.support.infra import Servers
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def stack(infra: Servers) -> Any:
    """A stack of this module's own (database, subject root): what it creates stays here."""
    telemetry.setup("tests", "WARNING")
    async with provisioned(infra) as s, running_stack(s) as running:
        yield running


HTTP_EXAMPLES = 12  # per operation (~80 of them)
BUS_EXAMPLES = 8  # each example publishes one message to every command subject (~17)
#: `min_position` beyond the store head waits `read_wait_max_seconds`, then 503 (issue 19,
#: defect 8, fixed separately): it is not generated here.
SKIPPED_PARAMS = {"min_position"}
#: Report uploads stream their own body into the report parsers, whose memory under deep
#: nesting is issue 19's defect 5 (fixed separately): they get small bodies only.
STREAMED = {"submitScan"}


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
            query = [
                p["name"] for p in params if p["in"] == "query" and p["name"] not in SKIPPED_PARAMS
            ]
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
    turn: int = 0
    sent: int = 0
    seen: dict[str, set[int]] = field(default_factory=dict)


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
        body = body_for([], deep=False)
    elif op.method != "GET":
        body = st.one_of(st.none(), body_for([], deep=False))
    return st.builds(
        build,
        st.fixed_dictionaries({n: segment(k) for n, k in op.path_params.items()}),
        st.fixed_dictionaries({}, optional={n: query_value for n in op.query_params}),
        body,
        content_type,
        st.sampled_from(["admin", "admin", "none", "garbage"]),
    )


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
    address = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(256)}"
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
    known = Known(org, project, tokens)
    loop = asyncio.get_running_loop()

    def fuzz(op: Operation) -> None:
        @settings(
            max_examples=HTTP_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(request_for(op, known))
        def operation(request: Request) -> None:
            response = asyncio.run_coroutine_threadsafe(send(stack, known, request), loop)
            check(request, response.result(120))

        operation()

    def each_operation() -> None:
        for op in OPERATIONS:
            fuzz(op)

    await asyncio.to_thread(each_operation)
    assert known.sent >= 2 * len(OPERATIONS), known.sent  # hypothesis really sent them
    await assert_history_intact(stack, timeout=60)


# --- the bus ------------------------------------------------------------------------------


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
        # deeper than this is issue 19's defect 4 (the worker's decoding), fixed separately
        st.sampled_from(
            [b"[" * 500 + b"]" * 500, b'{"id": "x", "data": ' + b"[" * 400 + b"]" * 400 + b"}"]
        ),
    )


BUS_COMMANDS = sorted(ROUTES.items())


async def test_generated_hostile_bus_commands_are_applied_or_dead_lettered(stack: Stack):
    org, _, _ = await make_org_and_project(stack.http, stack.admin)
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
                envelope_for(list(route.body.__struct_fields__)),
                st.sampled_from(["admin", "admin", "none", "garbage"]),
            )
            for _, route in BUS_COMMANDS
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
