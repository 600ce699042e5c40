"""`pearl audit verify` and `export`: intact chains pass; altered, deleted, reordered fail."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services import audit_cli
from tests.support.helpers import finding_body, make_org_and_project
from tests.support.processes import process_env
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(own_stack: Stack) -> Stack:
    return own_stack


async def _activity(stack: Stack) -> tuple[str, int]:
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    position = 0
    for i in range(5):
        r = await stack.http.post(
            f"/v1/projects/{project}/findings",
            json=finding_body(rule_id=f"r{i}"),
            headers=stack.admin,
        )
        position = r.json()["position"]
    await stack.http.get(
        f"/v1/projects/{project}/findings", params={"min_position": position}, headers=stack.admin
    )
    return org, position


def _cli_verify(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "verify", *args],
        env=process_env(stack.settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_verify_passes_then_names_the_first_tampered_position(stack: Stack):
    org, _ = await _activity(stack)
    ok = _cli_verify(stack, "--org", org)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "intact" in ok.stdout
    url = stack.settings.database_url or ""
    with psycopg.connect(url) as conn:
        victim = conn.execute(
            "SELECT position FROM audit_log WHERE org = %s ORDER BY position OFFSET 2 LIMIT 1",
            (org,),
        ).fetchone()[0]
        conn.execute(
            "UPDATE audit_log SET data = jsonb_set(data, '{title}', '\"forged\"')"
            " WHERE position = %s",
            (victim,),
        )
    bad = _cli_verify(stack, "--org", org)
    assert bad.returncode == 1
    assert f"position {victim}" in bad.stdout
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM audit_log WHERE position = %s", (victim,))
    assert audit_cli.verify_store(stack.app, url, org)[1] == victim


def _export(stack: Stack, org: str, key: Ed25519PrivateKey) -> list[str]:
    out = io.StringIO()
    count = audit_cli.export(stack.app, org, out, key)
    lines = out.getvalue().splitlines()
    assert count == len(lines) - 1
    return lines


async def test_export_verifies_offline_and_detects_edits_deletions_and_reordering(stack: Stack):
    org, _ = await _activity(stack)
    key = Ed25519PrivateKey.generate()
    lines = _export(stack, org, key)
    assert all(json.loads(line)["specversion"] == "1.0" for line in lines)
    assert audit_cli.verify_export(iter(lines)) == (len(lines) - 1, None)
    pinned = audit_cli.public_key_b64(key)
    assert audit_cli.verify_export(iter(lines), pinned)[1] is None

    edited = json.loads(lines[2])
    edited["data"]["title"] = "forged"
    tampered = [*lines[:2], json.dumps(edited), *lines[3:]]
    assert f"position {edited['pearlposition']}" in audit_cli.verify_export(iter(tampered))[1]
    deleted = [*lines[:2], *lines[3:]]
    assert audit_cli.verify_export(iter(deleted))[1] is not None
    swapped = [lines[0], lines[2], lines[1], *lines[3:]]
    assert audit_cli.verify_export(iter(swapped))[1] is not None
    truncated = lines[:-1]
    assert "checkpoint" in audit_cli.verify_export(iter(truncated))[1]
    other = audit_cli.public_key_b64(Ed25519PrivateKey.generate())
    assert "another key" in audit_cli.verify_export(iter(lines), other)[1]


async def test_cli_export_then_offline_verify_round_trip(stack: Stack, tmp_path: Path):
    org, _ = await _activity(stack)
    env = {**process_env(stack.settings), "PEARL_HOME": str(tmp_path)}
    out = tmp_path / "audit.jsonl"
    await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "services.cli.main",
            "audit",
            "export",
            "--org",
            org,
            "--output",
            str(out),
        ],
        env=env,
        check=True,
        timeout=120,
    )
    assert (tmp_path / "audit-signing.key").stat().st_mode & 0o777 == 0o600
    r = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "services.cli.main",
            "audit",
            "verify",
            "--from-export",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout


async def test_signed_checkpoints_anchor_the_chain_and_forgeries_are_named(stack: Stack):
    org, _ = await _activity(stack)
    url = stack.settings.database_url or ""
    key = Ed25519PrivateKey.generate()
    signed = await asyncio.to_thread(audit_cli.sign_checkpoints, stack.app, url, key, org)
    assert [name for name, _ in signed] == [org]
    again = await asyncio.to_thread(audit_cli.sign_checkpoints, stack.app, url, key, org)
    # a head is signed once; only the checkpoint event itself may have moved the head since
    assert all(seq > signed[0][1] for _, seq in again)
    assert not stack.app.record_checkpoint(org, signed[0][1], 0, "x", "k", "s")
    await _activity(stack)  # more entries, including the checkpoint event itself
    await stack.http.get("/v1/whoami", headers=stack.admin)
    pinned = audit_cli.public_key_b64(key)
    checked, bad = await asyncio.to_thread(audit_cli.verify_store, stack.app, url, org, pinned)
    assert bad is None and checked > 0
    other = audit_cli.public_key_b64(Ed25519PrivateKey.generate())
    _, bad = await asyncio.to_thread(audit_cli.verify_store, stack.app, url, org, other)
    assert bad is not None  # a checkpoint signed by another key than the deployment's
