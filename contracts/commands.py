"""Versioned command bodies accepted over HTTP and NATS (one struct per command)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from msgspec import Meta, Struct, field

from contracts.text import LINE, PROSE, refuse_unstorable

Slug = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}(?![\s\S])", max_length=63)]
#: One line a person typed (a name, a title).
Name = Annotated[str, LINE, Meta(min_length=1, max_length=200)]
#: Free text: several lines allowed.
Text = Annotated[str, PROSE, Meta(max_length=20_000)]
ShortText = Annotated[str, LINE, Meta(max_length=1_000)]
#: An identifier named in a body (an id, a tool, a rule): one line, no control characters.
Ident = Annotated[str, LINE, Meta(max_length=500)]
Severity = Literal["critical", "high", "medium", "low", "info"]
Role = Literal["viewer", "operator", "approver", "admin", "auditor", "service", "agent"]
Line = Annotated[int, Meta(ge=0, le=10_000_000)]
Environment = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,31}(?![\s\S])")]
#: A git commit id (abbreviated or full, SHA-1 or SHA-256).
Commit = Annotated[str, Meta(pattern=r"^[0-9a-f]{7,64}(?![\s\S])")]


class Command(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every command body: unknown fields are an error, never silently dropped.

    No string anywhere in a body (nested ones too) may hold what cannot be stored (NUL, a
    lone surrogate), except in the fields named in `evidence` (raw scanner reports).
    """

    evidence: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        refuse_unstorable(self, self.evidence)


class CreateOrg(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    slug: Slug
    name: Name


class CreateProject(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    slug: Slug
    name: Name
    environments: Annotated[list[Environment], Meta(min_length=1, max_length=10)] = field(
        default_factory=lambda: ["dev", "staging", "prod"]
    )


class RecordFinding(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Record one finding by hand or from an agent; scanners submit whole reports instead."""

    project_id: Ident | None = None
    tool: Annotated[str, LINE, Meta(min_length=1, max_length=100)]
    rule_id: Annotated[str, LINE, Meta(min_length=1, max_length=500)]
    title: Name
    severity: Severity
    path: ShortText | None = None
    line: Line | None = None
    message: Text = ""
    fingerprint: Annotated[str, LINE, Meta(min_length=8, max_length=128)] | None = None
    cwe: list[ShortText] = []
    cve: list[ShortText] = []


class SubmitScan(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A scan submitted on the bus: the report is in the object store (`object`) or inline."""

    evidence: ClassVar[frozenset[str]] = frozenset({"report"})

    project_id: Ident
    object: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}(?![\s\S])")] | None = None
    digest: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}(?![\s\S])")] | None = None
    report: Any = None
    tool: Annotated[str, LINE, Meta(max_length=50)] | None = None
    target: Annotated[str, LINE, Meta(min_length=1, max_length=500)] = "default"
    branch: Annotated[str, LINE, Meta(min_length=1, max_length=250)] = "main"
    full: bool = True
    commit: Commit | None = None


class TriageFinding(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    status: Literal["false_positive", "not_affected", "accepted_risk"]
    justification: Annotated[str, PROSE, Meta(min_length=1, max_length=5000)]


class IssueApiKey(Command, kw_only=True, forbid_unknown_fields=True, frozen=True):
    name: Name
    roles: Annotated[list[Role], Meta(min_length=1)]
    expires_in_days: Annotated[int, Meta(ge=1, le=3650)] | None = None
