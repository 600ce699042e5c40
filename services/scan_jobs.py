"""The scan job runner and scheduler: run requested jobs with local scanners, retry, schedule.

The runner is a process manager driven by the job's own events: a durable JetStream consumer
on `<root>.evt.*.scan_job.>` reacts to `requested` (make attempt 1) and to a `failed` that
will retry (make the next attempt once its back-off has passed; the message is nak'ed with
that delay until then). What to do is always decided from the job's state in the event store,
so redeliveries and several runners are harmless: an attempt starts by saving a `Started` /
`Retried` event with optimistic concurrency, and a job's report is ingested at most once (an
idempotency claim keyed by the job). An attempt whose runner died is recovered when the
instruction is redelivered after the attempt's timeout.

A report goes through exactly the ingestion path of an HTTP upload: spooled and hashed, parsed
whole, kept in the object store, then `submit_scan`.

The scheduler requests the jobs of each scheduled target's current slot; job ids derive from
the slot, so a slot is requested once however many schedulers run. Its tick is a job of the
scheduler process (`services.scheduler`); the `scan-jobs` process only runs the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any
from uuid import UUID

import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.envelope import EventEnvelope, event_type
from contracts.subjects import Subjects
from domain.errors import Conflict, PearlError
from domain.pearl_app import PearlApp
from domain.scan_job import Step
from domain.scan_target import Scheduled, due_scheduled
from domain.targets_app import JobRun
from projections import target_queries
from projections.queries import Pool
from services.reports import ReportStore, parse_file, spool_bytes
from services.scanners_local import PARSERS, ScannerError, run_scanner
from services.settings import Settings

log = logging.getLogger(__name__)
_decoder = msgspec.json.Decoder(EventEnvelope)
REQUESTED = event_type("scan_job", "requested")
FAILED = event_type("scan_job", "failed")


class ScanSettings(BaseSettings):
    """Knobs of the scan runner and scheduler (`PEARL_SCAN_*`)."""

    model_config = SettingsConfigDict(env_prefix="PEARL_SCAN_", extra="ignore")

    #: Wait after failed attempt n before the next: backoff_base_seconds * 2**n.
    backoff_base_seconds: float = 30.0
    #: A running attempt counts as abandoned this long after its timeout.
    grace_seconds: float = 60.0
    concurrency: int = 2
    #: If set, source/iac locations must be inside one of these; `{org}` is the job's org.
    allowed_roots: list[str] = []
    #: With allowed roots set, rules files may also be in these (shared rule sets).
    rules_roots: list[str] = []
    max_report_bytes: int = 100 * 1024 * 1024
    #: Where to look for scanners instead of PATH (and this Python's bin directory).
    search_path: str | None = None
    schedule_tick_seconds: float = 30.0
    ack_wait_seconds: float = 30.0


def instruction(env: EventEnvelope) -> int | None:
    """The attempt an event asks the runner to make: 1 after `requested`, n+1 after a retry."""
    if env.type == REQUESTED:
        return 1
    if env.type == FAILED and env.data.get("will_retry"):
        return int(env.data["attempt"]) + 1
    return None


class ScanJobRunner:
    """Consumes scan job events and makes the attempts they call for."""

    def __init__(
        self,
        app: PearlApp,
        js: JetStreamContext,
        subjects: Subjects,
        reports: ReportStore | None,
        settings: ScanSettings | None = None,
    ) -> None:
        self.app = app
        self.js = js
        self.subjects = subjects
        self.reports = reports
        self.settings = settings or ScanSettings()
        self.durable = f"{subjects.root}-scan-jobs"
        self.cancel = threading.Event()

    async def subscribe(self) -> Any:
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.settings.ack_wait_seconds,
            max_ack_pending=1000,
        )
        return await self.js.pull_subscribe(
            f"{self.subjects.root}.evt.*.scan_job.>",
            durable=self.durable,
            stream=self.subjects.events_stream,
            config=config,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch as many messages as there are free slots; each is handled in its own task."""
        sub = await self.subscribe()
        tasks: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            free = self.settings.concurrency - len(tasks)
            if free <= 0:
                await asyncio.wait(tasks, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                msgs = await sub.fetch(free, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                continue
            for msg in msgs:
                task = asyncio.create_task(self.handle(msg))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        self.cancel.set()
        if tasks:
            await asyncio.wait(tasks, timeout=30.0)

    async def handle(self, msg: Msg) -> None:
        """One event: make the attempt it asks for, or wait (nak with delay), then ack."""
        try:
            env = _decoder.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            log.error("undecodable scan job event skipped", extra={"subject": msg.subject})
            await msg.ack()
            return
        attempt = instruction(env)
        if attempt is None:
            await msg.ack()
            return
        beat = asyncio.create_task(self._heartbeat(msg))
        try:
            step = await self.process(UUID(env.aggregateid), attempt)
        except PearlError as exc:  # e.g. the job is not in this store: nothing to do, ever
            log.error(
                "scan job event refused", extra={"subject": msg.subject, "reason": exc.detail}
            )
            await msg.ack()
            return
        except Exception:  # the store or NATS is unavailable: try again later
            log.exception("scan job step failed", extra={"job_id": env.aggregateid})
            await _quietly(msg.nak(delay=2.0))
            return
        finally:
            beat.cancel()
        if step.action == "wait":
            await msg.nak(delay=max(step.delay, 0.05))
        else:
            await msg.ack()

    async def _heartbeat(self, msg: Msg) -> None:
        """Keep a long attempt's message from being redelivered while this runner is alive."""
        while True:
            await asyncio.sleep(self.settings.ack_wait_seconds / 3)
            await _quietly(msg.in_progress())

    async def process(self, job_id: UUID, attempt: int) -> Step:
        """Decide from the job's state what attempt `attempt` needs now, and do it."""
        step = await asyncio.to_thread(
            self.app.job_step, job_id, attempt, self.settings.grace_seconds
        )
        if step.action == "run":
            await self.attempt(job_id)
        elif step.action == "recover":
            await self.recover(job_id, attempt)
        return step

    async def attempt(self, job_id: UUID) -> None:
        """Start the next attempt, run the scanner, ingest its report; record the outcome."""
        try:
            run = await asyncio.to_thread(self.app.start_job, job_id)
        except Conflict as exc:  # another runner started it first, or it is not due
            log.info("scan job not started", extra={"job_id": str(job_id), "reason": exc.detail})
            return
        if run is None:
            return
        log.info(
            "scan job attempt",
            extra={"job_id": str(job_id), "org": run.org, "scanner": run.scanner},
        )
        try:
            raw = await asyncio.to_thread(self._scan, run)
            summary, version = await self.ingest(run, raw)
        except ScannerError as exc:
            await self._failed(job_id, exc.detail, permanent=exc.permanent)
        except PearlError as exc:  # the report was refused (unparseable, too large, …)
            await self._failed(job_id, f"{exc.code}: {exc.detail}")
        except Exception as exc:
            log.exception("scan job attempt failed unexpectedly", extra={"job_id": str(job_id)})
            await self._failed(job_id, f"internal error ({type(exc).__name__}); see worker logs")
        else:
            await asyncio.to_thread(self.app.job_succeeded, job_id, summary, version)

    def _scan(self, run: JobRun) -> bytes:
        roots = [root.replace("{org}", run.org) for root in self.settings.allowed_roots]
        return run_scanner(
            run.scanner,
            run.kind,
            run.location,
            timeout=run.timeout_seconds,
            rules=run.rules,
            allowed_roots=roots,
            rules_roots=self.settings.rules_roots,
            max_bytes=self.settings.max_report_bytes,
            search_path=self.settings.search_path,
            cancel=self.cancel,
        )

    async def ingest(self, run: JobRun, raw: bytes) -> tuple[dict[str, Any], str | None]:
        """The same path as an HTTP upload: spool and hash, parse whole, keep, submit."""
        with spool_bytes(raw) as spooled:
            report = await asyncio.to_thread(parse_file, spooled.path, PARSERS[run.scanner])
            try:
                if self.reports is not None:
                    await self.reports.put(spooled)
                result = await asyncio.to_thread(
                    self.app.ingest_job_report, run.job_id, report, spooled.digest, spooled.size
                )
            finally:
                report.close()
        return dict(result.ids), report.tool_version

    async def recover(self, job_id: UUID, attempt: int) -> None:
        """An attempt whose runner stopped: succeeded if its report got in, else failed."""
        summary = await asyncio.to_thread(self.app.job_ingested, job_id)
        if summary is not None:
            await asyncio.to_thread(self.app.job_succeeded, job_id, summary)
            return
        reason = f"attempt {attempt} was abandoned: its runner stopped before it finished"
        await self._failed(job_id, reason)

    async def _failed(self, job_id: UUID, reason: str, *, permanent: bool = False) -> None:
        log.warning("scan job attempt failed", extra={"job_id": str(job_id), "reason": reason})
        await asyncio.to_thread(
            lambda: self.app.job_failed(
                job_id,
                reason,
                backoff_base=self.settings.backoff_base_seconds,
                permanent=permanent,
            )
        )


class ScanScheduler:
    """Requests the jobs of every scheduled target's current slot, every tick."""

    def __init__(self, app: PearlApp, pool: Pool, settings: ScanSettings | None = None) -> None:
        self.app = app
        self.pool = pool
        self.settings = settings or ScanSettings()

    async def tick(self) -> int:
        """Request what is due now; returns how many jobs were requested."""
        rows = await target_queries.scheduled_targets(self.pool)
        targets = [Scheduled(UUID(tid), schedule, last) for tid, schedule, last in rows]
        requested = 0
        for target_id, slot in due_scheduled(targets, self.app.clock()):
            try:
                result = await asyncio.to_thread(self.app.request_scheduled_jobs, target_id, slot)
            except PearlError as exc:  # changed or removed meanwhile; the next tick sees it
                log.warning(
                    "scheduled scan not requested",
                    extra={"target_id": str(target_id), "reason": exc.detail},
                )
                continue
            requested += len(result.ids["jobs"])
        return requested


async def _quietly(aw: Any) -> None:
    with contextlib.suppress(Exception):
        await aw


async def run_scan_jobs(settings: Settings, scan: ScanSettings | None = None) -> None:
    """The `scan-jobs` process: the runner until SIGINT/SIGTERM (schedules: `scheduler`)."""
    from services.bus import connect
    from services.runtime import stop_event, subjects_of

    nats_url, _ = settings.require_urls()
    scan = scan or ScanSettings()
    app = PearlApp(env=settings.event_store_env())
    nc = await connect(nats_url, "pearl-scan-jobs")
    try:
        subjects = subjects_of(settings)
        reports = ReportStore(nc.jetstream(), subjects)
        runner = ScanJobRunner(app, nc.jetstream(), subjects, reports, scan)
        await runner.run(stop_event())
    finally:
        await nc.close()
        app.close()
