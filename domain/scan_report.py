"""The ScanReport aggregate: one submitted scanner report, content-addressed by its SHA-256."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id


def scan_report_id(
    project_id: str, tool: str, target: str, branch: str, digest: str, commit: str | None = None
) -> UUID:
    """The same bytes for the same scope (and commit) are the same scan: re-submitting is a no-op.

    Scans submitted without a commit keep the ids they always had.
    """
    if commit is None:
        return stable_id("scan", project_id, tool, target, branch, digest)
    return stable_id("scan", project_id, tool, target, branch, digest, commit)


class ScanReport(PearlAggregate):
    """What was submitted (digest, tool, version, scope) and what it changed (counts)."""

    @staticmethod
    def create_id(
        project_id: str,
        tool: str,
        target: str,
        branch: str,
        digest: str,
        commit: str | None = None,
        **_: Any,
    ) -> UUID:
        return scan_report_id(project_id, tool, target, branch, digest, commit)

    class Submitted(PearlAggregate.Created):
        """v2 names the commit that was scanned (gates require scans of the promoted commit).

        v1 events, stored before, scanned no known commit.
        """

        class_version = 2
        project_id: str
        tool: str
        tool_version: str | None
        format: str
        target: str
        branch: str
        full: bool
        digest: str
        size: int
        counts: dict[str, int]
        submitted_at: str
        commit: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["commit"] = None

    @event(Submitted)
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
        commit: str | None = None,
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
        self.commit = commit

    def summary(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "scan_id": str(self.id),
            "project_id": self.project_id,
            "tool": self.tool,
            "digest": self.digest,
            "full": self.full,
            "commit": self.commit,
            "counts": dict(self.counts),
        }
        if warnings := scan_warnings(self.counts):
            answer["warnings"] = warnings
        return answer


def scan_warnings(counts: dict[str, int]) -> list[str]:
    """What a scan's answer warns about: findings kept with characters escaped (if any)."""
    sanitized = counts.get("sanitized", 0)
    if not sanitized:
        return []
    return [
        f"{sanitized} finding(s) held characters PostgreSQL or JSON cannot store (NUL, control "
        "characters, lone surrogates); they were kept with each such character written as "
        "\\uXXXX."
    ]
