"""The ScanTarget aggregate: something of a project that PeaRL scans itself, and how often.

A target is a source tree or repository checkout, a container image reference, or an IaC
directory, with the local scanners to run on it and an optional interval schedule. Its id is
derived from (project, name), so registering the same name again finds the same target.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id
from domain.errors import Conflict, InvalidInput

KINDS = ("source", "image", "iac")
#: Which target kinds each supported scanner can scan (the worker reports which are installed).
SCANNER_KINDS: dict[str, frozenset[str]] = {
    "semgrep": frozenset({"source"}),
    "bandit": frozenset({"source"}),
    "pip-audit": frozenset({"source"}),
    "checkov": frozenset({"iac", "source"}),
    "trivy": frozenset({"image", "source", "iac"}),
    "grype": frozenset({"image", "source"}),
}
#: Scanners that need a local rules file (no network: registry rules cannot be downloaded).
NEEDS_RULES = frozenset({"semgrep"})
MIN_INTERVAL_SECONDS = 60
MAX_INTERVAL_SECONDS = 90 * 24 * 3600
MIN_TIMEOUT_SECONDS = 5
MAX_TIMEOUT_SECONDS = 6 * 3600
MAX_LOCATION = 1000

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_INTERVAL = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# An image reference never starts with "-", so it can never be read as a scanner option.
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,499}")
_BRANCH = re.compile(r"[^\x00-\x20\x7f]{1,250}")


def scan_target_id(project_id: str, name: str) -> UUID:
    return stable_id("scan_target", project_id, name)


def parse_interval(schedule: str) -> int:
    """Seconds of an interval schedule such as `30m`, `6h` or `1d`; InvalidInput otherwise."""
    match = _INTERVAL.fullmatch(schedule)
    if match is None:
        raise InvalidInput(f"schedule {schedule!r} must be an interval like '30m', '6h' or '1d'")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
        raise InvalidInput(f"schedule {schedule!r} must be between {MIN_INTERVAL_SECONDS}s and 90d")
    return seconds


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """What to scan and how: everything of a target that can change after registration."""

    kind: str
    location: str
    scanners: tuple[str, ...]
    schedule: str | None = None
    rules: str | None = None
    branch: str = "main"
    timeout_seconds: int = 600

    def check(self) -> TargetSpec:
        """Raise InvalidInput unless the spec is complete and every scanner fits the kind."""
        if self.kind not in KINDS:
            raise InvalidInput(f"kind must be one of {list(KINDS)}")
        _check_location(self.kind, self.location, "location")
        _check_scanners(self.kind, self.scanners)
        if self.schedule is not None:
            parse_interval(self.schedule)
        if self.rules is not None:
            _check_path(self.rules, "rules")
        elif NEEDS_RULES & set(self.scanners):
            raise InvalidInput("semgrep needs `rules`: the absolute path of a local rules file")
        if not _BRANCH.fullmatch(self.branch):
            raise InvalidInput("branch must be 1-250 characters without spaces or controls")
        if not MIN_TIMEOUT_SECONDS <= self.timeout_seconds <= MAX_TIMEOUT_SECONDS:
            raise InvalidInput(
                f"timeout_seconds must be between {MIN_TIMEOUT_SECONDS} and {MAX_TIMEOUT_SECONDS}"
            )
        return self

    def fields(self) -> dict[str, Any]:
        """The spec as plain event fields."""
        return {
            "kind": self.kind,
            "location": self.location,
            "scanners": list(self.scanners),
            "schedule": self.schedule,
            "rules": self.rules,
            "branch": self.branch,
            "timeout_seconds": self.timeout_seconds,
        }


def _check_path(value: str, what: str) -> None:
    if not value.startswith("/") or len(value) > MAX_LOCATION:
        raise InvalidInput(f"{what} must be an absolute path of at most {MAX_LOCATION} characters")
    if any(c < " " or c == "\x7f" for c in value):
        raise InvalidInput(f"{what} must not contain control characters")
    if ".." in value.split("/"):
        raise InvalidInput(f"{what} must not contain '..' segments")


def _check_location(kind: str, location: str, what: str) -> None:
    if kind == "image":
        if not _IMAGE.fullmatch(location):
            raise InvalidInput(f"{what} must be a container image reference (e.g. 'repo/app:1.2')")
        return
    _check_path(location, what)


def _check_scanners(kind: str, scanners: tuple[str, ...]) -> None:
    if not scanners:
        raise InvalidInput("a target needs at least one scanner")
    if len(set(scanners)) != len(scanners):
        raise InvalidInput("scanners must be unique")
    for name in scanners:
        kinds = SCANNER_KINDS.get(name)
        if kinds is None:
            raise InvalidInput(f"unknown scanner {name!r}; known: {sorted(SCANNER_KINDS)}")
        if kind not in kinds:
            raise InvalidInput(f"scanner {name!r} cannot scan a {kind!r} target")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput("a target name is a slug: lowercase letters, digits and '-'")
    return name


class ScanTarget(PearlAggregate):
    """A registered scan target: active until removed; a removed name can be registered again."""

    @staticmethod
    def create_id(project_id: str, name: str, **_: Any) -> UUID:
        return scan_target_id(project_id, name)

    @event("Registered")
    def __init__(
        self,
        org: str,
        project_id: str,
        name: str,
        kind: str,
        location: str,
        scanners: list[str],
        schedule: str | None,
        rules: str | None,
        branch: str,
        timeout_seconds: int,
        actor: str,
    ) -> None:
        self.org = org
        self.project_id = project_id
        self.name = name
        self.removed = False
        self._define(kind, location, scanners, schedule, rules, branch, timeout_seconds)

    def _define(
        self,
        kind: str,
        location: str,
        scanners: list[str],
        schedule: str | None,
        rules: str | None,
        branch: str,
        timeout_seconds: int,
    ) -> None:
        self.kind = kind
        self.location = location
        self.scanners = list(scanners)
        self.schedule = schedule
        self.rules = rules
        self.branch = branch
        self.timeout_seconds = timeout_seconds

    @property
    def spec(self) -> TargetSpec:
        return TargetSpec(
            kind=self.kind,
            location=self.location,
            scanners=tuple(self.scanners),
            schedule=self.schedule,
            rules=self.rules,
            branch=self.branch,
            timeout_seconds=self.timeout_seconds,
        )

    def update(self, spec: TargetSpec, actor: str) -> bool:
        """Replace the definition; False (and no event) when nothing changes."""
        if self.removed:
            raise Conflict(f"scan target {self.name!r} was removed; register it again")
        spec.check()
        if spec == self.spec:
            return False
        self._updated(**spec.fields(), actor=actor)
        return True

    @event("Updated")
    def _updated(
        self,
        kind: str,
        location: str,
        scanners: list[str],
        schedule: str | None,
        rules: str | None,
        branch: str,
        timeout_seconds: int,
        actor: str,
    ) -> None:
        self._define(kind, location, scanners, schedule, rules, branch, timeout_seconds)

    def reregister(self, spec: TargetSpec, actor: str) -> None:
        """Bring a removed target's name back with a new definition."""
        if not self.removed:
            raise Conflict(f"scan target {self.name!r} already exists")
        spec.check()
        self._reregistered(**spec.fields(), actor=actor)

    @event("Reregistered")
    def _reregistered(
        self,
        kind: str,
        location: str,
        scanners: list[str],
        schedule: str | None,
        rules: str | None,
        branch: str,
        timeout_seconds: int,
        actor: str,
    ) -> None:
        self.removed = False
        self._define(kind, location, scanners, schedule, rules, branch, timeout_seconds)

    def remove(self, reason: str, actor: str) -> None:
        if self.removed:
            raise Conflict(f"scan target {self.name!r} is already removed")
        self._removed(reason=reason[:500], actor=actor)

    @event("Removed")
    def _removed(self, reason: str, actor: str) -> None:
        self.removed = True

    def select(self, scanner: str | None) -> list[str]:
        """The scanners a job request runs: the one named (if the target has it) or all."""
        if self.removed:
            raise Conflict(f"scan target {self.name!r} was removed")
        if scanner is None:
            return list(self.scanners)
        if scanner not in self.scanners:
            raise InvalidInput(f"scan target {self.name!r} has no scanner {scanner!r}")
        return [scanner]


# --- schedules (pure) -------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def schedule_slot(target_id: UUID, interval: int, now: datetime) -> datetime:
    """The start of the current schedule slot of a target.

    Slots are `interval` apart and offset by a fraction of the interval derived from the target
    id, so targets with the same schedule do not all start at the same moment.
    """
    offset = target_id.int % interval
    elapsed = int((now - _EPOCH).total_seconds()) - offset
    return _EPOCH + timedelta(seconds=(elapsed // interval) * interval + offset)


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A scheduled target as the scheduler sees it, with the last slot it requested jobs for."""

    target_id: UUID
    schedule: str
    last_slot: datetime | None = None


def due_scheduled(targets: Iterable[Scheduled], now: datetime) -> list[tuple[UUID, datetime]]:
    """(target, slot) for every target whose current slot has not been requested yet."""
    due = []
    for target in targets:
        slot = schedule_slot(target.target_id, parse_interval(target.schedule), now)
        if target.last_slot is None or slot > target.last_slot:
            due.append((target.target_id, slot))
    return due
