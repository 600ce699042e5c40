"""The Finding aggregate: one issue in one project, tracked across scans by its fingerprint."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id
from domain.errors import Conflict, InvalidInput
from domain.sla import DEFAULT_SLA_DAYS

OPEN_STATUSES = frozenset({"open", "reopened"})
TRIAGE_STATUSES = frozenset({"false_positive", "not_affected", "accepted_risk"})
SEVERITIES = ("critical", "high", "medium", "low", "info")


def finding_id(project_id: UUID | str, fingerprint: str) -> UUID:
    """Derived from (project, fingerprint): re-ingesting the same result finds the same id."""
    return stable_id("finding", str(project_id), fingerprint)


class Finding(PearlAggregate):
    """A finding's lifecycle: open → fixed → reopened, or triaged with a justification."""

    @staticmethod
    def create_id(project_id: str, fingerprint: str, **_: Any) -> UUID:
        return finding_id(project_id, fingerprint)

    class Recorded(PearlAggregate.Created):
        """v2 records the SLA days the due date was computed with (reproducible SLA decisions).

        v1 events, stored before SLA policies existed, always used the defaults: the upcaster
        derives the same number from the severity.
        """

        class_version = 2
        project_id: str
        fingerprint: str
        tool: str
        rule_id: str
        title: str
        severity: str
        details: dict[str, Any]
        scan_id: str | None
        seen_at: str
        sla_due: str | None
        sla_days: int | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["sla_days"] = DEFAULT_SLA_DAYS.get(state["severity"])

    @event(Recorded)
    def __init__(
        self,
        org: str,
        project_id: str,
        fingerprint: str,
        tool: str,
        rule_id: str,
        title: str,
        severity: str,
        details: dict[str, Any],
        scan_id: str | None,
        seen_at: str,
        sla_due: str | None,
        sla_days: int | None,
        actor: str,
    ) -> None:
        self.org = org
        self.project_id = project_id
        self.fingerprint = fingerprint
        self.tool = tool
        self.rule_id = rule_id
        self.title = title
        self.severity = severity
        self.details = dict(details)
        self.sources = [tool]
        self.status = "open"
        self.first_seen = seen_at
        self.last_seen = seen_at
        self.scan_count = 1 if scan_id else 0
        self.sla_due = sla_due
        self.sla_days = sla_days
        self.justification: str | None = None
        self.last_scan_id = scan_id
        self.sla_breached = False

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def observe(self, tool: str, scan_id: str, seen_at: str, actor: str) -> None:
        """A scan reported it again: a fixed finding comes back reopened, else it is seen again."""
        if self.status == "fixed":
            self._reopened(tool=tool, scan_id=scan_id, seen_at=seen_at, actor=actor)
        else:
            self._seen_again(tool=tool, scan_id=scan_id, seen_at=seen_at, actor=actor)

    @event("SeenAgain")
    def _seen_again(self, tool: str, scan_id: str, seen_at: str, actor: str) -> None:
        self._touch(tool, seen_at, scan_id)

    @event("Reopened")
    def _reopened(self, tool: str, scan_id: str, seen_at: str, actor: str) -> None:
        self._touch(tool, seen_at, scan_id)
        self.status = "reopened"

    def _touch(self, tool: str, seen_at: str, scan_id: str) -> None:
        self.last_scan_id = scan_id
        self.sla_breached = False
        self.last_seen = seen_at
        self.scan_count += 1
        if tool not in self.sources:
            self.sources = [*self.sources, tool]

    def fix(self, scan_id: str, fixed_at: str, actor: str) -> None:
        """A later full scan of the same scope no longer reports it."""
        if not self.is_open:
            raise Conflict(f"finding {self.id} is {self.status}, only open findings can be fixed")
        self._fixed(scan_id=scan_id, fixed_at=fixed_at, actor=actor)

    @event("Fixed")
    def _fixed(self, scan_id: str, fixed_at: str, actor: str) -> None:
        self.status = "fixed"

    def triage(self, status: str, justification: str, actor: str) -> None:
        """A person decides it is a false positive, not affected, or an accepted risk."""
        if status not in TRIAGE_STATUSES:
            raise InvalidInput(f"triage status must be one of {sorted(TRIAGE_STATUSES)}")
        if not justification.strip():
            raise InvalidInput("a triage decision needs a justification")
        if not self.is_open:
            raise Conflict(f"finding {self.id} is {self.status}, only open findings can be triaged")
        self._triaged(status=status, justification=justification, actor=actor)

    def breach_sla(self, at: str, actor: str) -> bool:
        """The scheduler's command once the due date passed; False when not due or not open."""
        if not self.is_open or self.sla_breached or self.sla_due is None:
            return False
        if datetime.fromisoformat(self.sla_due) > datetime.fromisoformat(at):
            return False
        self._sla_breached(at=at, actor=actor)
        return True

    @event("SlaBreached")
    def _sla_breached(self, at: str, actor: str) -> None:
        self.sla_breached = True

    @event("Triaged")
    def _triaged(self, status: str, justification: str, actor: str) -> None:
        self.status = status
        self.justification = justification
