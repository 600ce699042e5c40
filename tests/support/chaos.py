"""Fault-injection helpers: a seeded mixed workload, the invariants it must leave behind, a TCP
proxy that delays, blackholes and cuts, and a local 3-node JetStream cluster.

The workload is a real client: every HTTP command carries an `Idempotency-Key` and is retried
with the same key on connection errors and 5xx; every bus command is an envelope with an id,
published with `Nats-Msg-Id` = that id and retried on any error. Each acknowledged command is
written into a `Ledger`; `check_invariants` then proves that each one is stored once, published
once and projected once, and that the audit chain verifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import psycopg
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.bus import servers_of
from services.embedded import find_free_port, nats_server_binary

ROOT = Path(__file__).resolve().parents[2]
#: real reports, small ones mostly (a scan of 84 findings is ~170 events)
SAMPLES = (
    "semgrep-pyyaml-3.13.json",
    "semgrep-pyyaml-3.13.sarif",
    "semgrep-pyyaml-3.13.json",
    "bandit-pyyaml-3.13.json",
)
COMMAND_DEADLINE_S = 180.0
RETRYABLE_STATUS = {429, 500, 502, 503, 504}


def chaos_seed(name: str) -> int:
    """`PEARL_CHAOS_SEED` replays a run; otherwise a fresh seed. Printed either way."""
    env = os.environ.get("PEARL_CHAOS_SEED")
    seed = int(env) if env else random.SystemRandom().randrange(2**32)
    print(f"\n[chaos] {name}: seed {seed} (replay with PEARL_CHAOS_SEED={seed})", flush=True)
    return seed


def say(text: str) -> None:
    print(f"[chaos] {text}", flush=True)


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll `check()` until truthy; exceptions count as "not yet". Fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await check()
            if last:
                return last
        except Exception as exc:  # the system is recovering: any error means "not yet"
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'condition'} not met in {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)


# ------------------------------------------------------------------------------------------
# What the client saw acknowledged
# ------------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """Every command the system acknowledged, and the one effect each must have had."""

    http_keys: set[str] = field(default_factory=set)
    nats_ids: set[str] = field(default_factory=set)
    fingerprints: set[str] = field(default_factory=set)  # one Finding.Recorded each
    comments: set[str] = field(default_factory=set)  # one ApprovalRequest.Commented each
    triaged: set[str] = field(default_factory=set)  # finding ids: one Triaged each
    scans: set[str] = field(default_factory=set)  # targets: one ScanReport.Submitted each
    applied_times: list[float] = field(default_factory=list)  # HTTP answers: stored
    accepted_times: list[float] = field(default_factory=list)  # JetStream acks: on the bus
    retries: int = 0

    @property
    def acknowledged(self) -> int:
        return len(self.http_keys) + len(self.nats_ids)

    def first_applied_after(self, t: float) -> float | None:
        """When the first command answered (stored) after `t` was answered."""
        later = [a for a in self.applied_times if a > t]
        return min(later) if later else None

    def first_accepted_after(self, t: float) -> float | None:
        """When the bus first acknowledged a command after `t`."""
        later = [a for a in self.accepted_times if a > t]
        return min(later) if later else None


class Workload:
    """A seeded mix of HTTP and NATS commands against one PeaRL: findings, triage, approval
    comments and scans of real samples."""

    def __init__(
        self,
        rng: random.Random,
        *,
        nats_url: str,
        root: str,
        admin_token: str,
        api_url: str | None = None,
        samples: Path | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.rng = rng
        self.api_url = api_url
        self.nats_url = nats_url
        self.root = root
        self.token = admin_token
        self.samples = samples
        self.ledger = ledger or Ledger()
        self.org = f"chaos-{uuid.uuid4().hex[:6]}"
        self.project = ""
        self.approval = ""
        self.recorded_ids: list[str] = []
        self.http: httpx.AsyncClient | None = None
        self.nc: Client | None = None
        self.started = 0

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[Workload]:
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        self.nc = await nats.connect(
            servers_of(self.nats_url),
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            error_cb=on_error,
        )
        if self.api_url:
            self.http = httpx.AsyncClient(base_url=self.api_url, timeout=15.0)
        try:
            yield self
        finally:
            if self.http is not None:
                await self.http.aclose()
            with contextlib.suppress(Exception):
                await self.nc.close()

    # -- transport with retries -------------------------------------------------------------

    async def command(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One HTTP command, retried with the same Idempotency-Key until acknowledged."""
        assert self.http is not None
        key = str(uuid.uuid4())
        headers = {**self.admin, "Idempotency-Key": key}
        if content is not None:
            headers["Content-Type"] = "application/json"
        deadline = time.monotonic() + COMMAND_DEADLINE_S
        while True:
            try:
                r = await self.http.request(
                    method, path, json=json_body, content=content, params=params, headers=headers
                )
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code < 300:
                self.ledger.http_keys.add(key)
                self.ledger.applied_times.append(time.monotonic())
                return dict(r.json())
            conflict = r is not None and "concurrency-conflict" in r.text  # "retry the command"
            if r is not None and r.status_code not in RETRYABLE_STATUS and not conflict:
                raise AssertionError(f"{method} {path} refused: {r.status_code} {r.text[:500]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} not acknowledged in {COMMAND_DEADLINE_S}s")
            self.ledger.retries += 1
            await asyncio.sleep(0.2)

    async def publish(self, aggregate: str, command: str, data: dict[str, Any]) -> str:
        """One bus command, published (same id, same msg id) until JetStream acknowledges it."""
        assert self.nc is not None
        cid = str(uuid.uuid4())
        body = json.dumps({"id": cid, "source": "chaos", "data": data}).encode()
        subject = f"{self.root}.cmd.{self.org}.{aggregate}.{command}"
        headers = {"Authorization": f"Bearer {self.token}", "Nats-Msg-Id": cid}
        deadline = time.monotonic() + COMMAND_DEADLINE_S
        js = self.nc.jetstream()
        while True:
            try:
                await js.publish(subject, body, headers=headers, timeout=3.0)
                self.ledger.nats_ids.add(cid)
                self.ledger.accepted_times.append(time.monotonic())
                return cid
            except Exception:
                if time.monotonic() > deadline:
                    raise
                self.ledger.retries += 1
                await asyncio.sleep(0.2)

    # -- the story --------------------------------------------------------------------------

    async def setup_over_nats(self, project: str) -> None:
        """For runs without an API: the org and project were made in-process."""
        self.project = project

    async def setup(self) -> None:
        """An org, a project, a policy needing an approval and a promotion awaiting it."""
        await self.command("POST", "/v1/orgs", json_body={"slug": self.org, "name": "Chaos"})
        r = await self.command(
            "POST", f"/v1/orgs/{self.org}/projects", json_body={"slug": "web", "name": "Web"}
        )
        self.project = r["id"]
        rule = {"id": "sign-off", "kind": "approvals", "roles": ["approver"], "ttl_hours": 720}
        await self.command(
            "PUT",
            f"/v1/orgs/{self.org}/policies/dev",
            json_body={"policy": {"rules": [rule]}, "reason": "chaos"},
        )
        body = {"version": "1.0.0", "commit": "c" * 40, "author": "dev@example.com"}
        await self.command("POST", f"/v1/projects/{self.project}/versions", json_body=body)
        r = await self.command(
            "POST",
            f"/v1/projects/{self.project}/promotions",
            json_body={"version": "1.0.0", "to": "dev"},
        )
        self.approval = str(r.get("approval_request_id") or r["ids"]["approval_request_id"])

    def _finding(self, n: int) -> dict[str, Any]:
        fp = f"chaos-{self.org}-{n:07d}"
        return {
            "tool": "semgrep",
            "rule_id": f"rule-{n % 23}",
            "title": f"finding {n}",
            "severity": ("low", "medium", "high")[n % 3],
            "path": f"src/m{n % 97}.py",
            "line": n % 1000 + 1,
            "fingerprint": fp,
        }

    async def one(self, n: int, kinds: list[str], finding: str | None = None) -> None:
        kind = kinds[n]
        if kind == "http-finding":
            body = self._finding(n)
            r = await self.command("POST", f"/v1/projects/{self.project}/findings", json_body=body)
            self.ledger.fingerprints.add(body["fingerprint"])
            self.recorded_ids.append(str(r["id"]))
        elif kind == "nats-finding":
            body = {**self._finding(n), "project_id": self.project}
            await self.publish("finding", "record", body)
            self.ledger.fingerprints.add(body["fingerprint"])
        elif kind == "triage":
            assert finding is not None
            body = {"status": "accepted_risk", "justification": f"chaos {n}"}
            await self.command("POST", f"/v1/findings/{finding}/triage", json_body=body)
            self.ledger.triaged.add(finding)
        elif kind == "http-comment":
            text = f"chaos comment {self.org} {n}"
            await self.command(
                "POST",
                f"/v1/approvals/{self.approval}/comments",
                json_body={"request_id": self.approval, "text": text},
            )
            self.ledger.comments.add(text)
        elif kind == "nats-comment":
            text = f"chaos comment {self.org} {n}"
            await self.publish("approval", "comment", {"request_id": self.approval, "text": text})
            self.ledger.comments.add(text)
        elif kind == "scan":
            assert self.samples is not None
            names = [x for x in SAMPLES if (self.samples / x).exists()] or sorted(
                x.name for x in self.samples.glob("*.json")
            )  # the shared samples, or the reports the repository ships for its tour
            name = names[n % len(names)]
            target = f"chaos-{n}"
            await self.command(
                "POST",
                f"/v1/projects/{self.project}/scans",
                content=(self.samples / name).read_bytes(),
                params={"target": target, "full": "true"},
            )
            self.ledger.scans.add(target)

    def plan(self, total: int, *, http: bool) -> list[str]:
        """The seeded sequence of command kinds (triage only once findings exist)."""
        weights = (
            {
                "http-finding": 40,
                "nats-finding": 30,
                "triage": 12,
                "http-comment": 8,
                "nats-comment": 8,
                "scan": 2,
            }
            if http
            else {"nats-finding": 85, "nats-comment": 15}
        )
        if not self.approval:
            weights = {k: v for k, v in weights.items() if "comment" not in k}
        kinds, recorded = [], 0
        names, w = list(weights), list(weights.values())
        while len(kinds) < total:
            kind = self.rng.choices(names, w)[0]
            if kind == "triage" and recorded < 1:
                continue
            recorded += 1 if kind == "http-finding" else -1 if kind == "triage" else 0
            kinds.append(kind)
        return kinds

    async def run(
        self,
        total: int,
        *,
        concurrency: int = 4,
        http: bool = True,
        until: asyncio.Event | None = None,
        rate: float | None = None,
    ) -> None:
        """At least `total` commands; with `until`, more (up to 2x) until it is set, so every
        fault lands on a system under load; `rate` caps commands started per second."""
        limit = total * 2 if until is not None else total
        kinds = self.plan(limit, http=http)
        counter = iter(range(limit))
        gate = asyncio.Lock()
        start = time.monotonic()

        async def client() -> None:
            for n in counter:
                if n >= total and (until is None or until.is_set()):
                    return
                if rate:
                    await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
                self.started = n + 1
                finding = None
                if kinds[n] == "triage":
                    async with gate:
                        await eventually(
                            self._has_recorded, 60, 0.05, "a recorded finding to triage"
                        )
                        finding = self.recorded_ids.pop(self.rng.randrange(len(self.recorded_ids)))
                await self.one(n, kinds, finding)

        await asyncio.gather(*(client() for _ in range(concurrency)))

    async def _has_recorded(self) -> bool:
        return bool(self.recorded_ids)


# ------------------------------------------------------------------------------------------
# Invariants
# ------------------------------------------------------------------------------------------


def subprocess_env(database_url: str, nats_url: str, root: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEARL_")}
    env.update(
        {
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "PEARL_SUBJECT_ROOT": root,
            "PEARL_LOG_LEVEL": "WARNING",
        }
    )
    return env


async def store_head(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=3) as conn:
        cur = await conn.execute("SELECT coalesce(max(notification_id), 0) FROM pearl_events")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def checkpoint(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=3) as conn:
        cur = await conn.execute("SELECT coalesce(min(position), 0) FROM projection_checkpoint")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def claimed(database_url: str, keys: set[str]) -> set[str]:
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=3) as conn:
        cur = await conn.execute(
            "SELECT key FROM pearl_idempotency WHERE key = ANY(%s)", (list(keys),)
        )
        return {row[0] for row in await cur.fetchall()}


async def settle(
    ledger: Ledger, database_url: str, nats_url: str, root: str, timeout: float = 120.0
) -> int:
    """Wait until every bus command was applied and, at one moment, the store head, the last
    published position and the projection checkpoint are the same."""
    wanted = {f"cmd:{i}" for i in ledger.nats_ids}

    said = [0.0]

    async def applied() -> bool:
        done = await claimed(database_url, wanted)
        if done == wanted:
            return True
        if time.monotonic() - said[0] > 10:  # how far it got: tells a slow worker from a loss
            said[0] = time.monotonic()
            missing = sorted(wanted - done)[:3]
            say(f"{len(done)} of {len(wanted)} bus commands applied; first missing {missing}")
        return False

    await eventually(applied, timeout, 0.5, "every acknowledged bus command applied")

    async def caught_up() -> int:
        head = await store_head(database_url)
        published = await last_published(nats_url, root)
        projected = await checkpoint(database_url)
        assert head == published == projected == await store_head(database_url), (
            f"head {head}, published {published}, projected {projected}"
        )
        return head

    return int(await eventually(caught_up, timeout, 0.2, "projections at the store head"))


async def stream_positions(nats_url: str, stream: str, subject: str) -> list[int]:
    """Every message of the events stream in order, as its store position."""
    nc = await nats.connect(servers_of(nats_url))
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        total = info.state.messages
        sub = await js.pull_subscribe(
            subject,
            stream=stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=60
            ),
        )
        positions: list[int] = []
        while len(positions) < total:
            msgs = await sub.fetch(min(1000, total - len(positions)), timeout=10)
            positions += [int((m.headers or {})["Pearl-Position"]) for m in msgs]
        await sub.unsubscribe()
        return positions
    finally:
        await nc.close()


@dataclass
class Report:
    stored: int
    published: int
    projected: int
    audit_verified: int
    types: Counter[str]


async def check_invariants(
    ledger: Ledger, *, database_url: str, nats_url: str, root: str
) -> Report:
    """Stored once, published once, projected once, audit chain intact; raises naming what
    was lost or doubled."""
    from domain.stored_decoder import EnvelopeDecoder
    from services.runtime import build_app
    from services.settings import Settings

    head = await settle(ledger, database_url, nats_url, root)
    problems: list[str] = []

    # -- stored once --------------------------------------------------------------------------
    keys = ledger.http_keys | {f"cmd:{i}" for i in ledger.nats_ids}
    missing = keys - await claimed(database_url, keys)
    if missing:
        problems.append(f"{len(missing)} acknowledged commands not stored: {sorted(missing)[:5]}")
    settings = Settings(database_url=database_url, nats_url=nats_url, subject_root=root)
    app = await asyncio.to_thread(build_app, settings)
    try:
        decode = EnvelopeDecoder(app.mapper).envelope
        envelopes = []
        start = 1
        while start <= head:
            page = await asyncio.to_thread(app.recorder.select_notifications, start, 5000, head)
            if not page:
                break
            envelopes += [
                decode(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in page
            ]
            start = page[-1].id + 1
    finally:
        app.close()
    stored = [e.position for e in envelopes]
    types = Counter(e.type for e in envelopes)

    def effects(event: str, key: Callable[[Any], str]) -> Counter[str]:
        return Counter(key(e) for e in envelopes if e.type.split(".")[2] == event)

    for name, wanted, counts in (
        ("finding", ledger.fingerprints, effects("recorded", lambda e: e.data.get("fingerprint"))),
        ("comment", ledger.comments, effects("commented", lambda e: e.data.get("text"))),
        ("triage", ledger.triaged, effects("triaged", lambda e: e.aggregateid)),
        ("scan", ledger.scans, effects("submitted", lambda e: e.data.get("target"))),
    ):
        lost = [w for w in wanted if counts[w] == 0]
        doubled = [w for w in wanted if counts[w] > 1]
        if lost:
            problems.append(f"{len(lost)} acknowledged {name}s lost: {lost[:5]}")
        if doubled:
            problems.append(f"{len(doubled)} {name}s stored twice or more: {doubled[:5]}")
    if stored and stored[-1] != head:
        problems.append(f"store head {head} but last stored {stored[-1]}")

    # -- published once -------------------------------------------------------------------------
    # (background jobs, e.g. the gatekeeper, may store more meanwhile: compare up to `head`)
    everything = await stream_positions(nats_url, _events_stream(root), f"{root}.evt.>")
    published = [p for p in everything if p <= head]
    if published != stored:
        dup = [p for p, c in Counter(published).items() if c > 1]
        gone = sorted(set(stored) - set(published))
        problems.append(
            f"stream != store: {len(published)} published, {len(stored)} stored, "
            f"duplicates {dup[:5]}, missing {gone[:5]}"
        )

    # -- projected once ---------------------------------------------------------------------------
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT count(*), count(DISTINCT position), coalesce(sum(position), 0) FROM audit_log"
            " WHERE position <= %s",
            (head,),
        )
        rows, distinct, total = await cur.fetchone() or (0, 0, 0)
        if (rows, distinct, total) != (len(stored), len(stored), sum(stored)):
            problems.append(f"audit_log has {rows} rows ({distinct} distinct), store {len(stored)}")
        cur = await conn.execute(
            "SELECT fingerprint, count(*) FROM finding_view WHERE fingerprint = ANY(%s) GROUP BY 1",
            (list(ledger.fingerprints),),
        )
        rows_by_fp = dict(await cur.fetchall())
        if set(rows_by_fp) != ledger.fingerprints or any(c != 1 for c in rows_by_fp.values()):
            absent = ledger.fingerprints - set(rows_by_fp)
            problems.append(f"finding_view: {len(absent)} findings missing, or some doubled")
        cur = await conn.execute(
            "SELECT count(*) FROM finding_view"
            " WHERE id::text = ANY(%s) AND status = 'accepted_risk'",
            (list(ledger.triaged),),
        )
        triaged = (await cur.fetchone() or (0,))[0]
        if triaged != len(ledger.triaged):
            problems.append(f"finding_view: {triaged} of {len(ledger.triaged)} triaged findings")

    # -- the audit chain ---------------------------------------------------------------------------
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli.main", "audit", "verify"],
        env=subprocess_env(database_url, nats_url, root),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    verified = 0
    if out.returncode != 0 or "intact" not in out.stdout:
        tail = f"{out.stdout[-500:]}{out.stderr[-500:]}"
        problems.append(f"audit verify: rc {out.returncode}: {tail}")
    else:
        verified = int(out.stdout.split("intact:")[1].split()[0])
        if verified < len(stored):
            problems.append(f"audit verify checked {verified} entries, store has {len(stored)}")
    assert not problems, "invariants broken:\n  " + "\n  ".join(problems)
    return Report(len(stored), len(published), head, verified, types)


async def last_published(nats_url: str, root: str) -> int:
    """The store position of the last event in the events stream."""
    nc = await nats.connect(servers_of(nats_url), max_reconnect_attempts=0, connect_timeout=2)
    try:
        js = nc.jetstream(timeout=2)
        stream = _events_stream(root)
        info = await js.stream_info(stream)
        if not info.state.last_seq:
            return 0
        msg = await js.get_msg(stream, seq=info.state.last_seq)
        return int((msg.headers or {}).get("Pearl-Position", "0"))
    finally:
        await nc.close()


async def measure_catch_up(
    recovery: Recovery,
    since: float,
    database_url: str,
    nats_url: str,
    root: str,
    timeout: float = 120.0,
) -> None:
    """How long after `since` the store head (as it is now) was published and projected."""
    head = await eventually(lambda: store_head(database_url), timeout, 0.1, "store head")

    async def published() -> bool:
        last = await last_published(nats_url, root)
        assert last >= head, f"published up to {last}"
        return True

    async def projected() -> bool:
        at = await checkpoint(database_url)
        assert at >= head, f"projected up to {at}"
        return True

    await eventually(published, timeout, 0.1, f"position {head} published ({recovery.target})")
    recovery.published_s = time.monotonic() - since
    await eventually(projected, timeout, 0.1, f"position {head} projected ({recovery.target})")
    recovery.caught_up_s = time.monotonic() - since


def _events_stream(root: str) -> str:
    from contracts.subjects import Subjects

    return Subjects(root=root).events_stream


# ------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------


def kill9(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Recovery:
    target: str
    at: float  # seconds into the run
    respawn_s: float | None = None
    ready_s: float | None = None
    applied_s: float | None = None
    published_s: float | None = None
    caught_up_s: float | None = None

    def line(self) -> str:
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        return (
            f"{self.target:<18} respawn {f(self.respawn_s):>6}s  ready {f(self.ready_s):>6}s  "
            f"first command {f(self.applied_s):>6}s  published {f(self.published_s):>6}s  "
            f"projected {f(self.caught_up_s):>6}s"
        )


# ------------------------------------------------------------------------------------------
# A TCP proxy the test drives
# ------------------------------------------------------------------------------------------


class TcpProxy:
    """127.0.0.1:<port> → upstream, with faults: `delay` per chunk, `blackhole()` (nothing
    passes, connections stay open — as a partition looks to TCP), `cut()` (every open
    connection reset)."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.delay = 0.0
        self._open = asyncio.Event()
        self._open.set()
        self._conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.base_events.Server | None = None
        self.accepted = 0

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url_for(self, url: str) -> str:
        """`url` with its host:port replaced by the proxy's."""
        from urllib.parse import urlparse

        parsed = urlparse(url)
        netloc = parsed.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return parsed._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()

    def blackhole(self) -> None:
        self._open.clear()

    def restore(self) -> None:
        self.delay = 0.0
        self._open.set()

    def cut(self) -> int:
        conns = list(self._conns)
        for writer in conns:
            writer.transport.abort()
        return len(conns)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._conns.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            await self._open.wait()
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self._conns.add(up_writer)
            await asyncio.gather(
                self._pipe(reader, up_writer),
                self._pipe(up_reader, writer),
                return_exceptions=True,
            )
        except OSError:
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._conns.discard(w)
                    w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._open.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)


# ------------------------------------------------------------------------------------------
# A local 3-node JetStream cluster
# ------------------------------------------------------------------------------------------


class NatsCluster:
    """`size` nats-server processes on free loopback ports, routed into one JetStream cluster."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.dir = directory
        self.size = size
        self.client_ports = [find_free_port() for _ in range(size)]
        self.route_ports = [find_free_port() for _ in range(size)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size
        self.binary = nats_server_binary()

    def name(self, i: int) -> str:
        return f"n{i}"

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.client_ports)

    def _config(self, i: int) -> Path:
        routes = ", ".join(
            f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.route_ports) if j != i
        )
        node = self.dir / self.name(i)
        node.mkdir(parents=True, exist_ok=True)
        conf = node / "nats.conf"
        conf.write_text(
            f"server_name: {self.name(i)}\n"
            f"host: 127.0.0.1\nport: {self.client_ports[i]}\n"
            f'jetstream {{ store_dir: "{node / "js"}" }}\n'
            f"cluster {{ name: chaos, host: 127.0.0.1, port: {self.route_ports[i]}, "
            f"routes: [{routes}] }}\n"
        )
        return conf

    def start(self, i: int | None = None) -> None:
        for n in range(self.size) if i is None else [i]:
            conf = self._config(n)
            log = (self.dir / f"{self.name(n)}.log").open("ab")
            self.procs[n] = subprocess.Popen(
                [self.binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
            log.close()

    def kill(self, name: str) -> None:
        i = int(name.removeprefix("n"))
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    async def ready(self, timeout: float = 30.0) -> None:
        """Every node accepts JetStream API calls (the meta leader is elected)."""

        async def all_up() -> bool:
            for port in self.client_ports:
                nc = await nats.connect(f"nats://127.0.0.1:{port}", max_reconnect_attempts=0)
                try:
                    await nc.jetstream().account_info()
                finally:
                    await nc.close()
            return True

        await eventually(all_up, timeout, 0.3, "the JetStream cluster")

    async def leader(self, stream: str) -> str:
        nc = await nats.connect(servers_of(self.url))
        try:
            info = await nc.jetstream(timeout=0.5).stream_info(stream)
            assert info.cluster is not None and info.cluster.leader
            return str(info.cluster.leader)
        finally:
            await nc.close()

    async def healthy(self, streams: list[str], timeout: float = 60.0) -> None:
        """Each stream has a leader and every other replica is current (caught up)."""

        async def current() -> bool:
            nc = await nats.connect(servers_of(self.url), max_reconnect_attempts=0)
            try:
                for stream in streams:
                    info = await nc.jetstream(timeout=2).stream_info(stream)
                    cluster = info.cluster
                    peers = (cluster.replicas or []) if cluster else []
                    if (
                        cluster is None
                        or not cluster.leader
                        or len(peers) != self.size - 1
                        or not all(p.current for p in peers)
                    ):
                        raise AssertionError(f"{stream}: {cluster}")
                return True
            finally:
                await nc.close()

        await eventually(current, timeout, 0.2, f"replicas of {streams} current")

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
