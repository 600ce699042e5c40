"""Poison on the command bus is dead-lettered, never redelivered forever, and never starves
valid commands: more poison messages than the consumer's max_ack_pending, of every kind that
fails before or during decoding, interleaved with valid commands, against a real worker."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import nats
import psycopg
import pytest

from contracts.commands import CreateOrg, CreateProject
from services.bus import worker_consumer
from services.runtime import build_app, subjects_of
from services.settings import Settings
from tests.support.helpers import eventually
from tests.support.processes import PearlProcess

pytestmark = pytest.mark.integration
POISON = 1_200  # more than max_ack_pending (1,000)
VALID = 100


def nested(depth: int) -> bytes:
    return b'{"id":"x","data":{"project_id":' + b"[" * depth + b"]" * depth + b"}}"


def poison_kinds(project: str) -> list[tuple[str, Callable[[int], bytes], str]]:
    """(name, body for message i, subject suffix): every way decoding can fail."""
    finding = {"tool": "t", "rule_id": "r", "title": "x", "severity": "low"}
    return [
        ("nested-1100", lambda i: nested(1_100), "cmd.acme.finding.record"),
        ("nested-100000", lambda i: nested(100_000), "cmd.acme.finding.record"),
        (
            "not-json",
            lambda i: bytes(random.Random(i).randrange(256) for _ in range(64)),
            "cmd.acme.finding.record",
        ),
        ("not-utf8", lambda i: b'{"id": "\xff\xfe", "data": {}}', "cmd.acme.finding.record"),
        ("json-not-object", lambda i: b"[1, 2, 3]", "cmd.acme.finding.record"),
        (
            "wrong-types",
            lambda i: json.dumps({"id": i, "data": [i]}).encode(),
            "cmd.acme.finding.record",
        ),
        (
            "unknown-field",
            lambda i: json.dumps({"id": f"u{i}", "data": {}, "x": 1}).encode(),
            "cmd.acme.finding.record",
        ),
        (
            "bad-data",
            lambda i: json.dumps({"id": f"b{i}", "data": {**finding, "severity": 7}}).encode(),
            "cmd.acme.finding.record",
        ),
        (
            "huge",
            lambda i: json.dumps({"id": f"h{i}", "data": {"x": "a" * 600_000}}).encode(),
            "cmd.acme.finding.record",
        ),
        (
            "unknown-command",
            lambda i: json.dumps({"id": f"c{i}", "data": {}}).encode(),
            "cmd.acme.nope.nope",
        ),
        ("empty", lambda i: b"", "cmd.acme.finding.record"),
        (
            "short-subject",
            lambda i: json.dumps({"id": f"s{i}", "data": {}}).encode(),
            "cmd.acme.finding",
        ),
        (
            "long-subject",
            lambda i: json.dumps({"id": f"l{i}", "data": {}}).encode(),
            "cmd.acme.finding.record.again",
        ),
    ]


async def test_poison_is_dead_lettered_with_a_reason_and_valid_commands_still_apply(
    fresh_settings: Settings, tmp_path: Path
):
    settings = fresh_settings
    subjects = subjects_of(settings)
    app = await asyncio.to_thread(build_app, settings)
    token = app.bootstrap_admin_key()
    admin = app.authenticate(token)
    app.create_org(admin, CreateOrg(slug="acme", name="Acme"))
    project = app.create_project(admin, "acme", CreateProject(slug="p", name="P")).ids["id"]
    UUID(project)
    kinds = poison_kinds(project)
    worker = PearlProcess("worker", settings, tmp_path).start()
    nc = await nats.connect(settings.nats_url or "")
    sent: Counter[str] = Counter()
    valid_ids = []
    try:
        js = nc.jetstream()
        auth = {"Authorization": f"Bearer {token}"}
        for i in range(POISON):
            name, body, suffix = kinds[i % len(kinds)]
            headers = dict(auth)
            if i % 7 == 3:  # bad headers too: no credential, another scheme, junk
                headers = [{}, {"Authorization": "Basic eA=="}, {"Authorization": "Bearer"}][i % 3]
            subject = f"{subjects.root}.{suffix}"
            await js.publish(subject, body(i), headers=headers)
            sent[name] += 1
            if i % (POISON // VALID) == 0:
                cid = str(uuid.uuid4())
                valid_ids.append(cid)
                data = {
                    "project_id": project,
                    "tool": "bus",
                    "rule_id": f"valid-{len(valid_ids)}",
                    "title": "valid",
                    "severity": "low",
                    "fingerprint": f"valid-{cid}",
                }
                await js.publish(
                    subjects.command("acme", "finding", "record"),
                    json.dumps({"id": cid, "data": data}).encode(),
                    headers=auth,
                )
        published = time.monotonic()
        assert len(valid_ids) == VALID

        url = settings.database_url or ""
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:

            async def all_valid_applied() -> bool:
                cur = await conn.execute(
                    "SELECT count(*) FROM pearl_idempotency WHERE key = ANY(%s)",
                    ([f"cmd:{c}" for c in valid_ids],),
                )
                row = await cur.fetchone()
                return row is not None and row[0] == VALID

            await eventually(all_valid_applied, timeout=180, interval=0.5)
        applied_s = time.monotonic() - published

        async def all_dead_lettered() -> bool:
            info = await js.stream_info(subjects.dlq_stream)
            return info.state.messages >= POISON

        await eventually(all_dead_lettered, timeout=180, interval=0.5)
        dead_s = time.monotonic() - published
        info = await js.stream_info(subjects.dlq_stream)
        assert info.state.messages == POISON  # once each
        codes: Counter[str] = Counter()
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(subjects.dlq_stream, seq=seq)
            headers = msg.headers or {}
            assert headers.get("Pearl-Dlq-Code"), headers
            assert headers.get("Pearl-Dlq-Reason"), headers
            assert "Authorization" not in headers
            codes[headers["Pearl-Dlq-Code"]] += 1
        assert set(codes) <= {
            "invalid-input",
            "unknown-command",
            "unauthenticated",
            "invalid-subject",
        }, codes

        async def queue_drained() -> bool:
            consumer = await js.consumer_info(
                subjects.commands_stream, worker_consumer(subjects).durable_name or ""
            )
            return consumer.num_ack_pending == 0 and consumer.num_pending == 0

        await eventually(queue_drained, timeout=30, interval=0.2)
        consumer = await js.consumer_info(
            subjects.commands_stream, worker_consumer(subjects).durable_name or ""
        )
        assert consumer.config.max_deliver == worker_consumer(subjects).max_deliver
        assert consumer.num_redelivered == 0  # poison is handled at its first delivery
        print(
            f"\npoison: {POISON} poison ({dict(sent)}) + {VALID} valid; valid applied in "
            f"{applied_s:.1f}s, all poison dead-lettered in {dead_s:.1f}s; codes {dict(codes)}"
        )
    finally:
        await nc.close()
        worker.stop()
        app.close()
