"""The TaskPacket aggregate: bounded remediation work handed to an agent (or a person).

open → claimed (lease with a TTL, renewed by heartbeats) → completed → verified by the next
full scan (or reopened when the fingerprints remain). A claim ends early by release (abandoned
or failed), by an expired lease (the scheduler's command) or by the holder being paused; the
packet is claimable again. Exactly one claim wins: claims are optimistic writes to this
aggregate.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id
from domain.errors import Conflict, GuardRailViolation, LeaseConflict
from domain.remediation import GuardRails, PacketPlan

CLAIMABLE = frozenset({"open"})
UNFINISHED = frozenset({"open", "claimed", "completed"})


def task_id(project_id: str, key: str) -> UUID:
    return stable_id("task", project_id, key)


class TaskPacket(PearlAggregate):
    @staticmethod
    def create_id(project_id: str, key: str, **_: Any) -> UUID:
        return task_id(project_id, key)

    @event("Created")
    def __init__(
        self,
        org: str,
        project_id: str,
        key: str,
        title: str,
        targets: list[dict[str, Any]],
        spec: dict[str, Any],
        guard_rails: dict[str, Any],
        priority: str,
        due: str | None,
        created_at: str,
        actor: str,
    ) -> None:
        self.org = org
        self.project_id = project_id
        self.key = key
        self.title = title
        self.targets = [dict(t) for t in targets]
        self.spec = dict(spec)
        self.guard_rails = dict(guard_rails)
        self.priority = priority
        self.due = due
        self.created_at = created_at
        self.status = "open"
        self.holder: str | None = None
        self.lease_expires_at: str | None = None
        self.attempts = 0
        self.outcome: dict[str, Any] | None = None
        self.completed_at: str | None = None
        self.remaining: list[str] = [t["fingerprint"] for t in self.targets]

    @classmethod
    def cut(cls, org: str, project_id: str, plan: PacketPlan, at: str, actor: str) -> TaskPacket:
        return cls(
            org=org,
            project_id=project_id,
            key=plan.key,
            title=plan.title,
            targets=[asdict(t) for t in plan.targets],
            spec=plan.spec,
            guard_rails=plan.guard_rails.as_dict(),
            priority=plan.priority,
            due=plan.due,
            created_at=at,
            actor=actor,
        )

    @property
    def finding_ids(self) -> list[str]:
        return [t["id"] for t in self.targets]

    @property
    def rails(self) -> GuardRails:
        return GuardRails(**self.guard_rails)

    def lease_live(self, now: datetime) -> bool:
        return (
            self.status == "claimed"
            and self.lease_expires_at is not None
            and datetime.fromisoformat(self.lease_expires_at) > now
        )

    def holder_agent(self) -> str | None:
        """The slug of the agent holding the packet, if an agent holds it."""
        if self.holder and self.holder.startswith("agent:"):
            return self.holder.removeprefix("agent:")
        return None

    # --- claims and leases ------------------------------------------------------------------

    def claim(self, holder: str, now: datetime, ttl: int) -> None:
        if self.status == "claimed" and not self.lease_live(now):
            self._lease_expired(holder=self.holder, at=now.isoformat(), actor=holder)
        if self.status == "claimed":
            who = "you" if self.holder == holder else self.holder
            raise LeaseConflict(f"task {self.id} is already claimed by {who}")
        if self.status not in CLAIMABLE:
            raise Conflict(f"task {self.id} is {self.status}; only open tasks can be claimed")
        self._claimed(
            holder=holder,
            at=now.isoformat(),
            lease_expires_at=(now + timedelta(seconds=ttl)).isoformat(),
            actor=holder,
        )

    @event("Claimed")
    def _claimed(self, holder: str, at: str, lease_expires_at: str, actor: str) -> None:
        self.status = "claimed"
        self.holder = holder
        self.lease_expires_at = lease_expires_at
        self.attempts += 1

    def _check_held(self, holder: str, now: datetime) -> None:
        """The caller holds a live lease, or a clear 409 saying why not."""
        if self.status != "claimed" or self.holder != holder:
            state = f"held by {self.holder}" if self.status == "claimed" else self.status
            raise LeaseConflict(f"task {self.id} is not held by you (it is {state})")
        if not self.lease_live(now):
            raise LeaseConflict(
                f"your lease on task {self.id} expired at {self.lease_expires_at}; claim it again"
            )

    def heartbeat(self, holder: str, now: datetime, ttl: int) -> None:
        self._check_held(holder, now)
        self._lease_renewed(
            lease_expires_at=(now + timedelta(seconds=ttl)).isoformat(),
            at=now.isoformat(),
            actor=holder,
        )

    @event("LeaseRenewed")
    def _lease_renewed(self, lease_expires_at: str, at: str, actor: str) -> None:
        self.lease_expires_at = lease_expires_at

    def release(self, holder: str, now: datetime, reason: str, failed: bool) -> None:
        self._check_held(holder, now)
        self._released(
            outcome="failed" if failed else "abandoned",
            reason=reason,
            at=now.isoformat(),
            actor=holder,
        )

    @event("Released")
    def _released(self, outcome: str, reason: str, at: str, actor: str) -> None:
        self.status = "open"
        self.holder = None
        self.lease_expires_at = None

    def expire_lease(self, now: datetime, actor: str) -> bool:
        """The scheduler's command: a lease past its expiry makes the packet claimable again."""
        if self.status != "claimed" or self.lease_live(now):
            return False
        self._lease_expired(holder=self.holder, at=now.isoformat(), actor=actor)
        return True

    @event("LeaseExpired")
    def _lease_expired(self, holder: str | None, at: str, actor: str) -> None:
        self.status = "open"
        self.holder = None
        self.lease_expires_at = None

    def revoke_lease(self, agent: str, now: datetime, reason: str, actor: str) -> bool:
        """The kill switch: the packet is taken back from a paused agent."""
        if self.status != "claimed" or self.holder_agent() != agent:
            return False
        self._released(outcome="revoked", reason=reason, at=now.isoformat(), actor=actor)
        return True

    # --- outcome and verification ------------------------------------------------------------

    def complete(
        self,
        holder: str,
        now: datetime,
        outcome: dict[str, Any],
        changed_files: list[str],
        changed_lines: int,
    ) -> None:
        self._check_held(holder, now)
        broken = self.rails.violations(changed_files, changed_lines)
        if broken:
            raise GuardRailViolation(f"task {self.id}: " + "; ".join(broken))
        self._completed(
            outcome={**outcome, "changed_files": changed_files, "changed_lines": changed_lines},
            at=now.isoformat(),
            actor=holder,
        )

    @event("Completed")
    def _completed(self, outcome: dict[str, Any], at: str, actor: str) -> None:
        self.status = "completed"
        self.outcome = dict(outcome)
        self.completed_at = at
        self.lease_expires_at = None

    def check_scan(
        self, scan_id: str, scan_at: str, tool: str, findings: dict[str, tuple[str, list[str]]]
    ) -> str | None:
        """Judge a completed packet by a full scan submitted after its completion.

        `findings` maps each target's fingerprint to (status, sources) after the scan. All
        gone (no longer open) → verified; any still open and covered by this scanner →
        reopened with what remains; a scan that covers none of them says nothing.
        """
        if self.status != "completed" or self.completed_at is None:
            return None
        if datetime.fromisoformat(scan_at) <= datetime.fromisoformat(self.completed_at):
            return None
        remaining = sorted(
            fp for fp, (status, _) in findings.items() if status in ("open", "reopened")
        )
        if not remaining:
            self._verified(scan_id=scan_id, at=scan_at, actor="system:verifier")
            return "verified"
        if any(tool in findings[fp][1] for fp in remaining):
            self._reopened(
                scan_id=scan_id, remaining=remaining, at=scan_at, actor="system:verifier"
            )
            return "reopened"
        return None

    @event("Verified")
    def _verified(self, scan_id: str, at: str, actor: str) -> None:
        self.status = "verified"
        self.holder = None
        self.remaining = []

    @event("Reopened")
    def _reopened(self, scan_id: str, remaining: list[str], at: str, actor: str) -> None:
        self.status = "open"
        self.holder = None
        self.remaining = list(remaining)

    def regress(self, remaining: list[str], at: str, actor: str) -> None:
        """A verified packet whose findings came back: open again with those fingerprints."""
        if self.status == "verified" and remaining:
            self._reopened(scan_id="", remaining=sorted(remaining), at=at, actor=actor)
