"""The TestRun aggregate: one submitted test-suite result for a commit (counts and coverage)."""

from __future__ import annotations

from eventsourcing.domain import event

from domain.base import PearlAggregate


class TestRun(PearlAggregate):
    __test__ = False  # not a pytest class

    @event("Submitted")
    def __init__(
        self,
        org: str,
        project_id: str,
        commit: str,
        suite: str,
        passed: int,
        failed: int,
        skipped: int,
        coverage: float | None,
        submitted_at: str,
        actor: str,
    ) -> None:
        self.org = org
        self.project_id = project_id
        self.commit = commit
        self.suite = suite
        self.passed = passed
        self.failed = failed
        self.skipped = skipped
        self.coverage = coverage
        self.submitted_at = submitted_at
