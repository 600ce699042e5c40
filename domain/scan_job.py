"""The ScanJob aggregate: one run of one scanner on one target, with its attempts and outcome.

Requested → Started → Succeeded, or Failed; a failed attempt before the last schedules a retry
(exponential back-off) and the next attempt is Retried. Every timestamp is passed in: the
aggregate never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id
from domain.errors import Conflict, InvalidInput

MAX_ATTEMPTS = 3
MAX_REASON = 2000
RUNNABLE = frozenset({"queued", "retry_wait"})
TRIGGERS = frozenset({"manual", "schedule"})


def scan_job_id(target_id: str, scanner: str, trigger: str, at: str) -> UUID:
    """A job per (target, scanner, trigger, moment): a schedule slot is requested only once."""
    return stable_id("scan_job", target_id, scanner, trigger, at)


def backoff_seconds(attempt: int, base: float) -> float:
    """Wait after failed attempt `attempt` (1, 2, …) before the next: `base * 2**attempt`."""
    return base * float(2**attempt)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise InvalidInput("timestamps must carry a time zone")
    return moment.isoformat()


class ScanJob(PearlAggregate):
    """A scan job; it carries a copy of its target's definition so it can be replayed as run."""

    @staticmethod
    def create_id(
        target_id: str, scanner: str, trigger: str, slot: str | None, requested_at: str, **_: Any
    ) -> UUID:
        return scan_job_id(target_id, scanner, trigger, slot or requested_at)

    @event("Requested")
    def __init__(
        self,
        org: str,
        project_id: str,
        target_id: str,
        target_name: str,
        scanner: str,
        kind: str,
        location: str,
        rules: str | None,
        branch: str,
        timeout_seconds: int,
        trigger: str,
        slot: str | None,
        requested_at: str,
        actor: str,
    ) -> None:
        self.org = org
        self.project_id = project_id
        self.target_id = target_id
        self.target_name = target_name
        self.scanner = scanner
        self.kind = kind
        self.location = location
        self.rules = rules
        self.branch = branch
        self.timeout_seconds = timeout_seconds
        self.trigger = trigger
        self.slot = slot
        self.requested_at = requested_at
        self.requested_by = actor
        self.status = "queued"
        self.attempts = 0
        self.next_run_at: str | None = requested_at
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.last_error: str | None = None
        self.scan_id: str | None = None
        self.counts: dict[str, int] = {}

    # --- commands -------------------------------------------------------------------------

    def start(self, now: datetime, actor: str) -> int:
        """Begin the next attempt (Started, or Retried after a failure); returns its number."""
        if self.status not in RUNNABLE:
            raise Conflict(f"scan job {self.id} is {self.status}; it cannot start")
        if self.attempts and self.next_run_at and datetime.fromisoformat(self.next_run_at) > now:
            raise Conflict(f"scan job {self.id} may not retry before {self.next_run_at}")
        attempt = self.attempts + 1
        if attempt == 1:
            self._started(attempt=attempt, started_at=_iso(now), actor=actor)
        else:
            self._retried(attempt=attempt, started_at=_iso(now), actor=actor)
        return attempt

    @event("Started")
    def _started(self, attempt: int, started_at: str, actor: str) -> None:
        self._run(attempt, started_at)

    @event("Retried")
    def _retried(self, attempt: int, started_at: str, actor: str) -> None:
        self._run(attempt, started_at)

    def _run(self, attempt: int, started_at: str) -> None:
        self.status = "running"
        self.attempts = attempt
        self.started_at = started_at
        self.next_run_at = None

    def succeed(
        self,
        scan_id: str,
        counts: dict[str, int],
        tool_version: str | None,
        digest: str | None,
        now: datetime,
        actor: str,
    ) -> None:
        if self.status != "running":
            raise Conflict(f"scan job {self.id} is {self.status}; only a running job succeeds")
        self._succeeded(
            attempt=self.attempts,
            scan_id=scan_id,
            counts=dict(counts),
            tool_version=tool_version,
            digest=digest,
            finished_at=_iso(now),
            actor=actor,
        )

    @event("Succeeded")
    def _succeeded(
        self,
        attempt: int,
        scan_id: str,
        counts: dict[str, int],
        tool_version: str | None,
        digest: str | None,
        finished_at: str,
        actor: str,
    ) -> None:
        self.status = "succeeded"
        self.scan_id = scan_id
        self.counts = dict(counts)
        self.finished_at = finished_at
        self.last_error = None

    def fail(
        self,
        reason: str,
        now: datetime,
        actor: str,
        *,
        backoff_base: float,
        permanent: bool = False,
    ) -> bool:
        """Record a failed attempt; True when another attempt is scheduled (with back-off)."""
        if self.status != "running":
            raise Conflict(f"scan job {self.id} is {self.status}; only a running job fails")
        will_retry = not permanent and self.attempts < MAX_ATTEMPTS
        retry_at = now + timedelta(seconds=backoff_seconds(self.attempts, backoff_base))
        self._failed(
            attempt=self.attempts,
            reason=(reason.strip() or "failed")[-MAX_REASON:],
            finished_at=_iso(now),
            will_retry=will_retry,
            retry_at=_iso(retry_at) if will_retry else None,
            actor=actor,
        )
        return will_retry

    @event("Failed")
    def _failed(
        self,
        attempt: int,
        reason: str,
        finished_at: str,
        will_retry: bool,
        retry_at: str | None,
        actor: str,
    ) -> None:
        self.status = "retry_wait" if will_retry else "failed"
        self.last_error = reason
        self.finished_at = finished_at
        self.next_run_at = retry_at

    def cancel(self, reason: str, now: datetime, actor: str) -> None:
        """Drop a job that has not started (its target was removed)."""
        if self.status not in RUNNABLE:
            raise Conflict(f"scan job {self.id} is {self.status}; it cannot be cancelled")
        self._cancelled(reason=reason[:MAX_REASON], cancelled_at=_iso(now), actor=actor)

    @event("Cancelled")
    def _cancelled(self, reason: str, cancelled_at: str, actor: str) -> None:
        self.status = "cancelled"
        self.last_error = reason
        self.finished_at = cancelled_at
        self.next_run_at = None

    # --- queries --------------------------------------------------------------------------

    def stale_at(self, grace: float) -> datetime | None:
        """When a running attempt counts as abandoned (its worker stopped before finishing)."""
        if self.status != "running" or self.started_at is None:
            return None
        return datetime.fromisoformat(self.started_at) + timedelta(
            seconds=self.timeout_seconds + grace
        )


@dataclass(frozen=True, slots=True)
class Step:
    """What a job runner should do about a job now: `run`, `wait` (`delay` s), `recover`, `skip`."""

    action: str
    delay: float = 0.0


SKIP = Step("skip")


def next_step(job: ScanJob, attempt: int, now: datetime, grace: float) -> Step:
    """Decide, from the job's state, what a runner told to make attempt `attempt` should do.

    The attempt is due once its retry time has come; a redelivered instruction for an attempt
    that is still marked running means its runner stopped: once the attempt's timeout (plus
    `grace`) has passed it is recovered (recorded as failed, or as succeeded if its report was
    already ingested). Anything else was done before: skip.
    """
    if job.status in RUNNABLE and job.attempts == attempt - 1:
        # A first attempt is due at once (the requester's clock may run ahead of the runner's).
        due = datetime.fromisoformat(job.next_run_at) if job.attempts and job.next_run_at else now
        return Step("run") if due <= now else Step("wait", (due - now).total_seconds())
    if job.status == "running" and job.attempts == attempt:
        stale = job.stale_at(grace)
        if stale is None or stale <= now:
            return Step("recover")
        return Step("wait", (stale - now).total_seconds())
    return SKIP
