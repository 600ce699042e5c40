"""`pearl audit verify` over a large store: the chain recomputed per position range, in parallel.

An entry's hash covers the one before, so a range starts from the chain heads the audit log
stores just before it. That guess is the recomputed head whenever every earlier range verifies,
and when one does not, its first bad position is the answer anyway: the result is always the
one a single pass would give. Processes are started only for large stores (and a plain mapper).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, pairwise
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    UUIDAsHex,
)
from psycopg.rows import tuple_row

from domain.stored_decoder import EnvelopeDecoder
from projections.audit import GENESIS, canonical_entry, chain_hash
from services.event_log import PAGE, Page, gc_paused, read_ahead, read_page

#: Below this many store positions one process does it all (starting one costs ~0.3 s).
PARALLEL_FROM = 100_000
_TRANSCODINGS = (UUIDAsHex, DecimalAsStr, DatetimeAsISO)
_json = msgspec.json.Decoder().decode
Checkpoints = dict[tuple[str, int], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Job:
    """What is verified: store positions up to `upto`, one org's chain or all of them."""

    database_url: str
    #: the events table, (schema, name)
    table: tuple[str, str]
    org: str | None
    public_key: str | None
    upto: int


def verify(
    job: Job,
    checkpoints: Callable[[], Checkpoints],
    mapper: Mapper[Any],
    workers: int | None = None,
) -> tuple[int, int | None]:
    """(entries checked, first bad position or None); `checkpoints` (the signed ones, by org
    and seq) is called while the worker processes start."""
    if not _plain(mapper):
        workers = 1  # a worker could not decode as this mapper does
    elif workers is None:
        workers = min(os.cpu_count() or 1, 8) if job.upto >= PARALLEL_FROM else 1
    ranges = list(pairwise([job.upto * i // workers for i in range(workers + 1)]))
    others = [_Worker() for _ in ranges[1:]]
    try:
        signed = checkpoints()
        for other, (after, upto) in zip(others, ranges[1:], strict=True):
            other.start(job, signed, after, upto)
        after, upto = ranges[0]
        checked, bad = verify_range(job, signed, after, upto, EnvelopeDecoder(mapper))
        for other in others:
            if bad is not None:
                break  # the first bad position is in an earlier range: the rest do not matter
            count, bad = other.outcome()
            checked += count
        return checked, bad
    finally:
        for other in others:
            other.stop()


def verify_range(
    job: Job, checkpoints: Checkpoints, after: int, upto: int, decoder: EnvelopeDecoder
) -> tuple[int, int | None]:
    """Check the audit rows in positions (after, upto] against the events there."""
    with (
        gc_paused(),
        psycopg.connect(job.database_url, autocommit=True) as events_conn,
        psycopg.connect(job.database_url, autocommit=True) as rows_conn,
    ):
        heads = _heads_before(rows_conn, job.org, after)
        pages = read_ahead(_event_pages(events_conn, job.table, decoder, after, upto))
        stored = chain.from_iterable(read_ahead(_audit_pages(rows_conn, job.org, after, upto)))
        org, pinned = job.org, job.public_key
        checked = 0
        for page in pages:
            native = page.json_native
            for env in page:
                if org is not None and env.org != org:
                    continue  # chains are per org: another org's never touches this one
                seq, prev = heads.get(env.org, (0, GENESIS))
                seq += 1
                digest = chain_hash(prev, canonical_entry(env, seq), json_native=native)
                heads[env.org] = (seq, digest)
                got = next(stored, None)
                if got is None or got[0] != env.position:
                    return checked, env.position if got is None else min(got[0], env.position)
                if (
                    got[3] != digest
                    or got[2] != seq
                    or got[1] != env.org
                    or got[4] != env.type
                    or got[5] != env.actor
                    or got[6] != env.aggregateid
                    or got[7] != env.aggregateversion
                    or _json(got[8]) != env.data
                ):
                    return checked, env.position
                cp = checkpoints.get((env.org, seq)) if checkpoints else None
                if cp is not None and not checkpoint_holds(cp, env.org, digest, pinned):
                    return checked, env.position
                checked += 1
        extra = next(stored, None)
        return checked, (extra[0] if extra else None)


def checkpoint_holds(cp: dict[str, Any], org: str, digest: str, pinned: str | None) -> bool:
    """The checkpoint names this hash for its seq and its signature is valid (by `pinned`)."""
    if cp["hash"] != digest or (pinned and cp["public_key"] != pinned):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(cp["public_key"])).verify(
            base64.b64decode(cp["signature"]), checkpoint_message(org, cp["seq"], digest)
        )
    except Exception:
        return False
    return True


def checkpoint_message(org: str, seq: int, digest: str) -> bytes:
    return f"pearl-audit-checkpoint\n{org}\n{seq}\n{digest}".encode()


class _Task(msgspec.Struct, frozen=True):
    """A range for a worker process, as it travels on the worker's stdin."""

    database_url: str
    table: tuple[str, str]
    org: str | None
    public_key: str | None
    checkpoints: list[tuple[str, int, dict[str, Any]]]
    after: int
    upto: int


class _Worker:
    """`python -m services.audit_verify` checking one range (a process of its own: the GIL)."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.audit_verify"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
        )

    def start(self, job: Job, checkpoints: Checkpoints, after: int, upto: int) -> None:
        signed = [(org, seq, cp) for (org, seq), cp in checkpoints.items()]
        task = _Task(job.database_url, job.table, job.org, job.public_key, signed, after, upto)
        assert self.process.stdin is not None
        self.process.stdin.write(msgspec.json.encode(task))
        self.process.stdin.close()

    def outcome(self) -> tuple[int, int | None]:
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        if self.process.wait() != 0:
            raise RuntimeError(f"audit verification worker failed (exit {self.process.returncode})")
        checked, bad = msgspec.json.decode(out.splitlines()[-1], type=tuple[int, int | None])
        return checked, bad

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _work() -> None:
    """The worker process: a task on stdin, (checked, first bad position) on stdout."""
    task = msgspec.json.decode(sys.stdin.buffer.read(), type=_Task)
    job = Job(task.database_url, task.table, task.org, task.public_key, task.upto)
    checkpoints = {(org, seq): cp for org, seq, cp in task.checkpoints}
    # the parent's mapper is plain (`_plain`), so a fresh one decodes the same
    transcoder = JSONTranscoder()
    for transcoding in _TRANSCODINGS:
        transcoder.register(transcoding())
    decoder = EnvelopeDecoder(Mapper(transcoder))
    outcome = verify_range(job, checkpoints, task.after, task.upto, decoder)
    sys.stdout.buffer.write(msgspec.json.encode(outcome) + b"\n")


def _plain(mapper: Mapper[Any]) -> bool:
    """No cipher, no compressor, the library's JSON transcoder with its default transcodings."""
    transcoder = mapper.transcoder
    return (
        mapper.cipher is None
        and mapper.compressor is None
        and type(transcoder) is JSONTranscoder
        and sorted(type(t).__name__ for t in transcoder.names.values())
        == sorted(t.__name__ for t in _TRANSCODINGS)
    )


def _heads_before(
    conn: psycopg.Connection[Any], org: str | None, after: int
) -> dict[str, tuple[int, str]]:
    """Each org's (seq, hash) as the audit log stores it at position `after` (org by org)."""
    if after == 0:
        return {}
    rows = conn.execute(_HEADS, {"org": org, "after": after}).fetchall()
    return {name: (seq, digest) for name, seq, digest in rows}


_HEADS = """
WITH RECURSIVE orgs (org) AS (
    SELECT min(org) FROM audit_log WHERE %(org)s::text IS NULL OR org = %(org)s
    UNION ALL
    SELECT (SELECT min(a.org) FROM audit_log a WHERE a.org > orgs.org)
    FROM orgs WHERE orgs.org IS NOT NULL AND %(org)s::text IS NULL
)
SELECT orgs.org, head.seq, head.hash FROM orgs CROSS JOIN LATERAL (
    SELECT seq, hash FROM audit_log a
    WHERE a.org = orgs.org AND a.position <= %(after)s ORDER BY a.position DESC LIMIT 1
) head
"""


def _event_pages(
    conn: psycopg.Connection[Any],
    table: tuple[str, str],
    decoder: EnvelopeDecoder,
    after: int,
    upto: int,
) -> Iterator[Page]:
    with conn.cursor(row_factory=tuple_row, binary=True) as cur:
        while page := read_page(cur, table, decoder, after, PAGE, upto):
            yield page
            after = page[-1].position


def _audit_pages(
    conn: psycopg.Connection[Any], org: str | None, after: int, upto: int
) -> Iterator[list[tuple[Any, ...]]]:
    """Audit rows in positions (after, upto], data as JSON text (decoded only to compare)."""
    sql, scope = (_AUDIT_PAGE, []) if org is None else (_ORG_AUDIT_PAGE, [org])
    with conn.cursor() as cur:
        while rows := cur.execute(sql, [*scope, after, upto, PAGE], prepare=True).fetchall():
            yield rows
            after = rows[-1][0]


_AUDIT_COLUMNS = (
    "SELECT position, org, seq, hash, type, actor, aggregate_id::text, aggregate_version,"
    " data::text FROM audit_log WHERE"
)
_AUDIT_PAGE = f"{_AUDIT_COLUMNS} position > %s AND position <= %s ORDER BY position LIMIT %s"
_ORG_AUDIT_PAGE = (
    f"{_AUDIT_COLUMNS} org = %s AND position > %s AND position <= %s ORDER BY position LIMIT %s"
)


if __name__ == "__main__":
    _work()
