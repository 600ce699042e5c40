"""Schemathesis against a running API (`pearl run api` on a local port) and its own document.

Every operation of `/schema/openapi.json` gets valid (positive) and invalid (negative) input,
then a bounded stateful phase chains operations through the links schemathesis infers.
Checks: no server error, every status documented, every content type documented, every
answer (problem+json ones included) conforms to its documented schema.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.health import assert_history_intact
from tests.support.helpers import eventually
from tests.support.processes import process_env
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(own_stack: Stack) -> Stack:
    return own_stack


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 3  # per operation and generation mode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def api_url(stack: Stack, tmp_path: Path) -> Any:
    port = _free_port()
    env = process_env(stack.settings) | {
        "PEARL_PORT": str(port),
        "PEARL_RATE_LIMIT_PER_MINUTE": "1000000",
        "PEARL_AUTH_FAILURES_PER_MINUTE": "1000000",
        "PEARL_READ_WAIT_MAX_SECONDS": "2",
    }
    proc = _start_api(env, tmp_path / "api.log")
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:

            async def up() -> bool:
                try:
                    return (await client.get(f"{url}/health")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(up, timeout=30, interval=0.2)
        yield url
    finally:
        await asyncio.to_thread(_stop, proc)


def _start_api(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "run", "api"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _run(url: str, token: str) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{url}/schema/openapi.json")
    auth = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    positions: list[tuple[Any, str]] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = schema.get_case_strategy(operation, generation_mode=mode)

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(strategy)
            def case_passes(case: Any) -> None:
                response = case.call_and_validate(
                    base_url=url, headers=auth, checks=CHECKS, timeout=30
                )
                if "min_position" in (case.query or {}):
                    kind = response.json().get("type") if response.status_code >= 400 else "2xx"
                    positions.append((case.query["min_position"], str(kind)))

            try:
                case_passes()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to make invalid (no input)

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": auth, "base_url": url, "timeout": 30}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Machine.run(
        settings=settings(
            max_examples=15,
            stateful_step_count=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # `min_position` is generated freely now: beyond the store head it is refused at once
    beyond = [p for p, kind in positions if kind == "urn:pearl:problem:position-beyond-head"]
    assert beyond, positions[:20]
    return [operation.label for operation in operations]


async def test_schemathesis_finds_no_server_error_nor_schema_violation(stack: Stack, api_url: str):
    labels = await asyncio.to_thread(_run, api_url, stack.admin_token)
    assert len(labels) > 50  # every operation of the document was exercised
    await assert_history_intact(stack, timeout=60)
