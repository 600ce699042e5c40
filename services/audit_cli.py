"""`pearl audit verify|export`: the audit chain recomputed from the event store, or offline."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from contracts.envelope import EventEnvelope
from domain.pearl_app import PearlApp
from projections.audit import GENESIS, canonical_entry, chain_hash
from services.audit_verify import Job, verify
from services.audit_verify import checkpoint_holds as checkpoint_holds
from services.audit_verify import checkpoint_message as checkpoint_message
from services.event_log import EventLog

CHECKPOINT_TYPE = "pearl.audit.checkpoint.v1"


@dataclass(frozen=True, slots=True)
class Entry:
    env: EventEnvelope
    seq: int
    prev: str
    hash: str


def store_events(app: PearlApp, upto: int | None = None) -> Iterator[EventEnvelope]:
    """Every stored event in order, decoded and mapped (bounded memory)."""
    for page in EventLog(app).pages(upto):
        yield from page


def chain(events: Iterator[EventEnvelope], org: str | None) -> Iterator[Entry]:
    """The per-org hash chain, recomputed from events (only `org`'s when one is named)."""
    heads: dict[str, tuple[int, str]] = {}
    for env in events:
        if org is not None and env.org != org:
            continue  # chains are per org: another org's never touches this one
        seq, prev = heads.get(env.org, (0, GENESIS))
        seq += 1
        digest = chain_hash(prev, canonical_entry(env, seq))
        heads[env.org] = (seq, digest)
        yield Entry(env, seq, prev, digest)


CHECKPOINT_TOPIC = "domain.audit_checkpoint:AuditCheckpoint.Signed"


def stored_checkpoints(app: PearlApp) -> dict[tuple[str, int], dict[str, Any]]:
    """Every signed checkpoint in the store, by (org, seq)."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for page in EventLog(app).pages(topics=[CHECKPOINT_TOPIC]):
        for env in page:
            found[(env.org, int(env.data["seq"]))] = env.data
    return found


def sign_checkpoints(
    app: PearlApp, database_url: str, key: Ed25519PrivateKey, org: str | None = None
) -> list[tuple[str, int]]:
    """Sign each org's chain head as recomputed from the store (never from the read model)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT position FROM projection_checkpoint WHERE name = 'read_models'"
        ).fetchone()
    upto = int(row[0]) if row else 0
    heads: dict[str, Entry] = {}
    for entry in chain(store_events(app, upto), org):
        heads[entry.env.org] = entry
    signed = []
    public = public_key_b64(key)
    for name, head in sorted(heads.items()):
        signature = base64.b64encode(key.sign(checkpoint_message(name, head.seq, head.hash)))
        if app.record_checkpoint(
            name, head.seq, head.env.position, head.hash, public, signature.decode()
        ):
            signed.append((name, head.seq))
    return signed


def verify_store(
    app: PearlApp, database_url: str, org: str | None, public_key: str | None = None
) -> tuple[int, int | None]:
    """(entries checked, first bad position or None): audit_log and the signed checkpoints
    against the chain recomputed from the event store."""
    recorder = app.recorder
    if not isinstance(recorder, PostgresApplicationRecorder):
        raise TypeError("audit verification reads the PostgreSQL event store")
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT position FROM projection_checkpoint WHERE name = 'read_models'"
        ).fetchone()
    upto = int(row[0]) if row else 0
    table = (recorder.datastore.schema, recorder.events_table_name)
    job = Job(database_url, table, org, public_key, upto)
    return verify(job, lambda: stored_checkpoints(app), app.mapper)


@dataclass(frozen=True, slots=True)
class Coverage:
    """How much of the event store the audit chain covers: the read models' checkpoint against
    the store head (positions after the checkpoint are not chained yet)."""

    checkpoint: int
    head: int
    behind: int  # stored events after the checkpoint, up to the head


def coverage(app: PearlApp, database_url: str, wait: float = 10.0) -> Coverage:
    """Wait (at most `wait` seconds) for the chain to reach the store head as of now, then say
    how far behind it still is; a live projector catches up in milliseconds, a stuck one not."""
    recorder = app.recorder
    if not isinstance(recorder, PostgresApplicationRecorder):
        raise TypeError("audit verification reads the PostgreSQL event store")
    table = SQL("{}.{}").format(
        Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
    )
    deadline = time.monotonic() + wait
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(table))
        head = int(_first(row.fetchone()))
        while True:
            row = conn.execute(
                "SELECT position FROM projection_checkpoint WHERE name = 'read_models'"
            )
            checkpoint = int(_first(row.fetchone()))
            if checkpoint >= head or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        row = conn.execute(
            SQL(
                "SELECT count(*) FROM {} WHERE notification_id > %s AND notification_id <= %s"
            ).format(table),
            (checkpoint, head),
        )
        behind = int(_first(row.fetchone()))
    return Coverage(checkpoint, head, behind)


def _first(row: tuple[Any, ...] | None) -> Any:
    return row[0] if row else 0


# --- export -------------------------------------------------------------------------------


def signing_key(home: Path) -> Ed25519PrivateKey:
    """The deployment's Ed25519 checkpoint key: PEARL_AUDIT_SIGNING_KEY or .pearl/audit.key."""
    raw = os.environ.get("PEARL_AUDIT_SIGNING_KEY")
    path = home / "audit-signing.key"
    if raw is None and path.exists():
        raw = path.read_text().strip()
    if raw is None:
        key = Ed25519PrivateKey.generate()
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(seed).decode() + "\n")
        return key
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(raw))


def public_key_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def cloudevent(entry: Entry) -> dict[str, Any]:
    """One entry as a CloudEvents 1.0 structured-mode JSON object (extensions: pearl*)."""
    env = entry.env
    return {
        "specversion": "1.0",
        "id": env.id,
        "source": env.source,
        "type": env.type,
        "subject": env.subject,
        "time": env.time,
        "datacontenttype": "application/json",
        "data": env.data,
        "pearlorg": env.org,
        "pearlposition": env.position,
        "pearlaggregate": env.aggregate,
        "pearlaggregateid": env.aggregateid,
        "pearlaggregateversion": env.aggregateversion,
        "pearlactor": env.actor,
        "pearlseq": entry.seq,
        "pearlprevhash": entry.prev,
        "pearlhash": entry.hash,
    }


def export(
    app: PearlApp,
    org: str,
    out: IO[str],
    key: Ed25519PrivateKey,
    since: str | None = None,
    until: str | None = None,
) -> int:
    """Write an org's entries (optionally a time window) and one signed checkpoint."""
    last: Entry | None = None
    count = 0
    for entry in chain(store_events(app), org):
        if (since and entry.env.time < since) or (until and entry.env.time >= until):
            continue
        out.write(json.dumps(cloudevent(entry), separators=(",", ":"), sort_keys=True) + "\n")
        last, count = entry, count + 1
    if last is not None:
        signature = key.sign(checkpoint_message(org, last.seq, last.hash))
        out.write(
            json.dumps(
                {
                    "specversion": "1.0",
                    "type": CHECKPOINT_TYPE,
                    "pearlorg": org,
                    "pearlseq": last.seq,
                    "pearlhash": last.hash,
                    "pearlposition": last.env.position,
                    "publickey": public_key_b64(key),
                    "signature": base64.b64encode(signature).decode(),
                },
                separators=(",", ":"),
                sort_keys=True,
            )
            + "\n"
        )
    return count


def _envelope_of(event: dict[str, Any]) -> EventEnvelope:
    return EventEnvelope(
        id=event["id"],
        source=event["source"],
        type=event["type"],
        subject=event["subject"],
        time=event["time"],
        org=event["pearlorg"],
        data=event["data"],
        position=event["pearlposition"],
        aggregate=event["pearlaggregate"],
        aggregateid=event["pearlaggregateid"],
        aggregateversion=event["pearlaggregateversion"],
        actor=event["pearlactor"],
    )


def verify_export(lines: Iterator[str], public_key: str | None = None) -> tuple[int, str | None]:
    """Offline: (entries checked, first problem) for an export file; nothing else is trusted."""
    prev: str | None = None
    seq = 0
    checked = 0
    last_hash = ""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        event = json.loads(line)
        if event.get("type") == CHECKPOINT_TYPE:
            return checked, _check_signature(event, seq, last_hash, public_key)
        position = event.get("pearlposition")
        if prev is None:  # the first exported entry anchors the chain
            prev = GENESIS if event["pearlseq"] == 1 else event["pearlprevhash"]
            seq = event["pearlseq"] - 1
        seq += 1
        digest = chain_hash(prev, canonical_entry(_envelope_of(event), seq))
        if (
            event["pearlseq"] != seq
            or event["pearlprevhash"] != prev
            or digest != event["pearlhash"]
        ):
            return checked, f"entry at position {position} (line {number}) does not verify"
        prev, last_hash = digest, digest
        checked += 1
    return checked, "the export has no signed checkpoint (truncated?)" if checked else None


def _check_signature(
    event: dict[str, Any], seq: int, last_hash: str, pinned: str | None
) -> str | None:
    if event["pearlseq"] != seq or event["pearlhash"] != last_hash:
        return "the checkpoint does not match the last entry"
    key_b64 = pinned or event["publickey"]
    if pinned and pinned != event["publickey"]:
        return "the checkpoint is signed by another key than the one given"
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key_b64)).verify(
            base64.b64decode(event["signature"]),
            checkpoint_message(event["pearlorg"], seq, last_hash),
        )
    except Exception:
        return "the checkpoint signature is invalid"
    return None
