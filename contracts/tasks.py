"""Command bodies for remediation task packets (HTTP `/v1/projects/{p}/tasks`, NATS `task.*`)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from contracts.commands import Command, Commit, Ident, Severity
from contracts.text import LINE, PROSE

Uuid = Annotated[str, Meta(pattern=r"^[0-9a-fA-F-]{32,36}(?![\s\S])")]
PathGlob = Annotated[str, LINE, Meta(min_length=1, max_length=500)]
RepoPath = Annotated[str, LINE, Meta(min_length=1, max_length=1000)]
#: How long a claim holds without a heartbeat.
LeaseSeconds = Annotated[int, Meta(ge=30, le=86_400)]
Reason = Annotated[str, PROSE, Meta(min_length=1, max_length=2000)]
GroupBy = Literal["finding", "rule", "file", "package"]


class CreateTasks(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Cut open findings into task packets: the named ones, or every open one that matches.

    Findings already in an unfinished packet are skipped. Guard rails default to the files
    the findings are in and 200 changed lines.
    """

    project_id: Ident | None = None
    finding_ids: Annotated[list[Uuid], Meta(max_length=1000)] = []
    group_by: GroupBy = "finding"
    severities: Annotated[list[Severity], Meta(max_length=5)] = []
    #: At most this many packets are created in one call.
    limit: Annotated[int, Meta(ge=1, le=500)] = 50
    allowed_paths: Annotated[list[PathGlob], Meta(max_length=200)] = []
    max_changed_lines: Annotated[int, Meta(ge=1, le=100_000)] = 200


class ClaimTask(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    task_id: Uuid | None = None
    ttl_seconds: LeaseSeconds = 900


class TaskHeartbeat(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    task_id: Uuid | None = None
    ttl_seconds: LeaseSeconds = 900


class CompleteTask(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """What the holder did: where the change is, which files it touched, and a summary."""

    task_id: Uuid | None = None
    branch: Annotated[str, LINE, Meta(min_length=1, max_length=500)] | None = None
    commit: Commit | None = None
    pr_url: Annotated[str, Meta(pattern=r"^https?://\S{1,2000}(?![\s\S])")] | None = None
    changed_files: Annotated[list[RepoPath], Meta(min_length=1, max_length=1000)]
    changed_lines: Annotated[int, Meta(ge=0, le=10_000_000)]
    summary: Annotated[str, PROSE, Meta(min_length=1, max_length=10_000)]


class ReleaseTask(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Give a claimed packet back: abandoned (someone else may try) or failed (it was tried)."""

    task_id: Uuid | None = None
    reason: Reason
    failed: bool = False
