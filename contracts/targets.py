"""Command bodies for scan targets and scan jobs, accepted over HTTP and NATS."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from contracts.commands import Command, Slug
from contracts.text import LINE

TargetKind = Literal["source", "image", "iac"]
Scanner = Literal["semgrep", "bandit", "checkov", "pip-audit", "trivy", "grype"]
#: An absolute path on the worker's host (source, iac) or an image reference (image).
Location = Annotated[str, LINE, Meta(min_length=1, max_length=1000)]
AbsolutePath = Annotated[
    str, Meta(pattern=r"^/[^\x00-\x1f\x7f-\x9f\ud800-\udfff]*(?![\s\S])", max_length=1000)
]
Interval = Annotated[str, Meta(pattern=r"^[1-9][0-9]{0,6}[smhd](?![\s\S])")]
Branch = Annotated[str, LINE, Meta(min_length=1, max_length=250)]
Timeout = Annotated[int, Meta(ge=5, le=21_600)]
Scanners = Annotated[list[Scanner], Meta(min_length=1, max_length=6)]
Uuid = Annotated[str, LINE, Meta(min_length=32, max_length=36)]


class TargetDefinition(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """What a target is and how it is scanned; `schedule` is an interval such as `6h`."""

    kind: TargetKind
    location: Location
    scanners: Scanners
    schedule: Interval | None = None
    rules: AbsolutePath | None = None
    branch: Branch = "main"
    timeout_seconds: Timeout = 600


class RegisterScanTarget(TargetDefinition, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Register a target of a project (on the bus `project_id` names the project)."""

    name: Slug
    project_id: Uuid | None = None


class UpdateScanTarget(TargetDefinition, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Replace a target's definition (its name and project stay)."""


class RequestScanJob(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Run a target's scanners now: the one named, or all of them (one job per scanner)."""

    scanner: Scanner | None = None
    target_id: Uuid | None = None
