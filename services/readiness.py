"""Readiness that tells the truth: dependencies, relay lag, projection lag, stuck and failed ones.

One report serves the API's `/ready` (503 unless every check is ok) and `/metrics`, and
`pearl projections status`. Every check is bounded by `ready_check_timeout_seconds`, so a
dependency that hangs makes the answer "not ready", never a hung probe.

* relay lag = store head - the `Pearl-Position` header of the last message in the events stream;
* projection lag = store head - the checkpoint;
* stuck = behind and not moved for `ready_stuck_seconds` (as seen by this process);
* a failure recorded by the projector (`projection_failure`) is named with its position and error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from nats.aio.client import Client

from contracts.subjects import Subjects
from projections.queries import Pool
from projections.status import Failure, StoreStatus, error_text, read_status
from services.relay import stream_position
from services.settings import Settings

EVENTS_TABLE = "pearl_events"


@dataclass
class _Progress:
    position: int | None = None
    since: float = 0.0


@dataclass
class Report:
    """The answer of one readiness check."""

    checks: dict[str, str] = field(default_factory=dict)
    head: int | None = None
    relay: dict[str, Any] | None = None
    projections: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v == "ok" for v in self.checks.values())

    def body(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ok else "not-ready",
            "checks": self.checks,
            "head": self.head,
            "relay": self.relay,
            "projections": self.projections,
        }


def failure_body(failure: Failure) -> dict[str, Any]:
    return {
        "projection": failure.projection,
        "position": failure.position,
        "error": failure.error,
        "attempts": failure.attempts,
        "first_failed_at": failure.first_failed_at.isoformat() if failure.first_failed_at else None,
        "last_failed_at": failure.last_failed_at.isoformat() if failure.last_failed_at else None,
    }


class Readiness:
    """Computes reports; remembers positions between calls to see what is stuck."""

    def __init__(
        self,
        settings: Settings,
        subjects: Subjects,
        *,
        events_table: str = EVENTS_TABLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.subjects = subjects
        self.events_table = events_table
        self.clock = clock
        self._progress: dict[str, _Progress] = {}
        self._recheck: asyncio.Task[None] | None = None

    def stalled(self, name: str, position: int, lag: int) -> float:
        """Seconds `name` has been behind without moving (0 when caught up or moving)."""
        now = self.clock()
        seen = self._progress.setdefault(name, _Progress(position, now))
        if lag <= 0 or seen.position != position:
            seen.position, seen.since = position, now
        return now - seen.since

    async def report(self, pool: Pool | None, nc: Client | None) -> Report:
        report = Report()
        timeout = self.settings.ready_check_timeout_seconds
        status = await self._postgres(pool, timeout, report)
        connected = nc is not None and nc.is_connected
        report.checks["nats"] = "ok" if connected else "unavailable"
        relay: int | None = None
        if nc is not None and connected:
            try:
                async with asyncio.timeout(timeout):
                    relay = await stream_position(nc.jetstream(), self.subjects)
            except Exception as exc:
                report.checks["relay"] = f"unknown: {error_text(exc)}"
        else:
            report.checks["relay"] = "unknown: NATS unavailable"
        if status is None:
            report.checks.setdefault("relay", "unknown: PostgreSQL unavailable")
            report.checks.setdefault("projections", "unknown: PostgreSQL unavailable")
            return report
        self.judge(report, status, relay)
        return report

    def judge(self, report: Report, status: StoreStatus, relay: int | None) -> None:
        """Fill `report` from the store's status and the relay's position (None: unknown)."""
        report.head = status.head
        if relay is not None:
            self._judge_relay(report, status.head, relay)
        self._judge_projections(report, status)

    async def _postgres(
        self, pool: Pool | None, timeout: float, report: Report
    ) -> StoreStatus | None:
        if pool is None:
            report.checks["postgres"] = "unavailable: no pool"
            return None
        try:
            async with asyncio.timeout(timeout), pool.connection(timeout=timeout) as conn:
                await conn.execute("SELECT 1")
                report.checks["postgres"] = "ok"
                return await read_status(conn, self.events_table)
        except Exception as exc:
            if "postgres" not in report.checks:
                report.checks["postgres"] = f"unavailable: {type(exc).__name__}"
                if isinstance(exc, psycopg.Error | TimeoutError | OSError):
                    self._check_pool(pool, timeout)
            else:
                report.checks["projections"] = f"unknown: {error_text(exc)}"
            return None

    def _check_pool(self, pool: Pool, timeout: float) -> None:
        """Drop every connection left over from before an outage now, not one per request."""
        if self._recheck is None or self._recheck.done():
            self._recheck = asyncio.get_running_loop().create_task(_recheck(pool, timeout))

    def _judge_relay(self, report: Report, head: int, relay: int) -> None:
        lag = max(head - relay, 0)
        stalled = self.stalled("relay", relay, lag)
        report.relay = {"position": relay, "lag": lag, "stalled_seconds": round(stalled, 1)}
        if lag > self.settings.ready_max_relay_lag:
            report.checks["relay"] = (
                f"behind: {lag} events (more than {self.settings.ready_max_relay_lag})"
            )
        elif stalled > self.settings.ready_stuck_seconds:
            report.checks["relay"] = f"stuck: {lag} events behind, not moved for {stalled:.0f}s"
        else:
            report.checks["relay"] = "ok"

    def _judge_projections(self, report: Report, status: StoreStatus) -> None:
        problems: list[str] = []
        for state in status.checkpoints:
            lag = max(state.lag, 0)
            stalled = self.stalled(f"projection:{state.name}", state.position, lag)
            report.projections[state.name] = {
                "position": state.position,
                "lag": lag,
                "stalled_seconds": round(stalled, 1),
                "failure": failure_body(state.failure) if state.failure else None,
            }
            if state.failure is not None:
                report.failures.append(state.failure)
                problems.append(f"failed: {state.failure.describe()}")
            elif lag > self.settings.ready_max_projection_lag:
                problems.append(
                    f"behind: {state.name} is {lag} events behind"
                    f" (more than {self.settings.ready_max_projection_lag})"
                )
            elif stalled > self.settings.ready_stuck_seconds:
                problems.append(
                    f"stuck: {state.name} is {lag} events behind, not moved for {stalled:.0f}s"
                )
        report.checks["projections"] = "; ".join(problems) or "ok"


async def _recheck(pool: Pool, timeout: float) -> None:
    try:
        async with asyncio.timeout(max(timeout * 5, 5.0)):
            await pool.check()
    except Exception:  # best effort: the next request or check tries again
        return


async def status_report(settings: Settings) -> Report:
    """A one-off report for `pearl projections status` (its own connections, then closed)."""
    from psycopg_pool import AsyncConnectionPool

    from services.bus import connect

    nats_url, database_url = settings.require_urls()
    readiness = Readiness(settings, Subjects(root=settings.subject_root))
    pool: Pool = AsyncConnectionPool(
        database_url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
    )
    nc: Client | None = None
    try:
        await pool.open(wait=False)
        try:
            async with asyncio.timeout(settings.ready_check_timeout_seconds * 5):
                nc = await connect(nats_url, "pearl-status")
        except Exception:  # reported as NATS unavailable
            nc = None
        return await readiness.report(pool, nc)
    finally:
        if nc is not None:
            await nc.close()
        await pool.close()


def status_lines(report: Report) -> list[str]:
    """`pearl projections status`: the head, the relay, each checkpoint, lag and failure."""
    lines = [f"store head {report.head if report.head is not None else 'unknown'}"]
    if report.relay is not None:
        lines.append(f"relay       position {report.relay['position']}  lag {report.relay['lag']}")
    for name, state in report.projections.items():
        line = f"{name:<11} checkpoint {state['position']}  lag {state['lag']}"
        failure = state["failure"]
        if failure:
            line += (
                f"  FAILED in {failure['projection']} at position {failure['position']}"
                f" ({failure['attempts']} attempts since {failure['first_failed_at']}):"
                f" {failure['error']}"
            )
        lines.append(line)
    for check, value in report.checks.items():
        if value != "ok":
            lines.append(f"not ready: {check}: {value}")
    return lines
