"""The ScanScope aggregate: which findings the last scans of one (tool, target, branch) saw.

A full scan that no longer reports a finding of its scope fixes it; membership changes are
recorded as deltas, chunked so no single event grows without bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id

CHUNK = 2000


def scan_scope_id(project_id: str, tool: str, target: str, branch: str) -> UUID:
    return stable_id("scope", project_id, tool, target, branch)


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


class ScanScope(PearlAggregate):
    """The set of finding ids currently present in one scan scope."""

    @staticmethod
    def create_id(project_id: str, tool: str, target: str, branch: str, **_: Any) -> UUID:
        return scan_scope_id(project_id, tool, target, branch)

    @event("Opened")
    def __init__(
        self, org: str, project_id: str, tool: str, target: str, branch: str, actor: str
    ) -> None:
        self.org = org
        self.project_id = project_id
        self.tool = tool
        self.target = target
        self.branch = branch
        self.present: set[str] = set()

    def record_scan(
        self, scan_id: str, seen: Iterable[str], gone: Iterable[str], actor: str
    ) -> None:
        """Add what the scan saw and remove what a full scan no longer reports, in chunks."""
        added = sorted(set(seen) - self.present)
        removed = sorted(set(gone) & self.present)
        for chunk in _chunks(added):
            self._changed(scan_id=scan_id, added=chunk, removed=[], actor=actor)
        for chunk in _chunks(removed):
            self._changed(scan_id=scan_id, added=[], removed=chunk, actor=actor)

    @event("MembershipChanged")
    def _changed(self, scan_id: str, added: list[str], removed: list[str], actor: str) -> None:
        self.present = (self.present | set(added)) - set(removed)
