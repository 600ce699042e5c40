"""The ScanReport aggregate: one submitted scanner report, content-addressed by its SHA-256."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id


def scan_report_id(project_id: str, tool: str, target: str, branch: str, digest: str) -> UUID:
    """The same bytes for the same scope are the same scan: re-submitting is a no-op."""
    return stable_id("scan", project_id, tool, target, branch, digest)


class ScanReport(PearlAggregate):
    """What was submitted (digest, tool, version, scope) and what it changed (counts)."""

    @staticmethod
    def create_id(
        project_id: str, tool: str, target: str, branch: str, digest: str, **_: Any
    ) -> UUID:
        return scan_report_id(project_id, tool, target, branch, digest)

    @event("Submitted")
    def __init__(
        self,
        org: str,
        project_id: str,
        tool: str,
        tool_version: str | None,
        format: str,
        target: str,
        branch: str,
        full: bool,
        digest: str,
        size: int,
        counts: dict[str, int],
        submitted_at: str,
        actor: str,
    ) -> None:
        self.org = org
        self.project_id = project_id
        self.tool = tool
        self.tool_version = tool_version
        self.format = format
        self.target = target
        self.branch = branch
        self.full = full
        self.digest = digest
        self.size = size
        self.counts = dict(counts)
        self.submitted_at = submitted_at

    def summary(self) -> dict[str, Any]:
        return {
            "scan_id": str(self.id),
            "project_id": self.project_id,
            "tool": self.tool,
            "digest": self.digest,
            "full": self.full,
            "counts": dict(self.counts),
        }
