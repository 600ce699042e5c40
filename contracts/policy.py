"""The gate policy document: a declarative list of rules per environment (YAML or JSON).

`PolicyDocument` is the contract: `pearl schemas` publishes its JSON Schema
(docs/schemas/policy.schema.json) and every policy is decoded through it, so a policy
that is accepted always has exactly this shape. Rules are a tagged union on `kind`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta, Struct, field

from contracts.text import LINE, refuse_unstorable

RuleId = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}(?![\s\S])")]
Severity = Literal["critical", "high", "medium", "low", "info"]
Role = Literal["viewer", "operator", "approver", "admin", "auditor", "service", "agent"]
Criticality = Literal["low", "medium", "high", "critical"]
Classification = Literal["public", "internal", "confidential", "personal", "restricted"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ClockTime = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](?![\s\S])")]
Hours = Annotated[float, Meta(gt=0, le=24 * 365)]
Ratio = Annotated[float, Meta(ge=0, le=1)]
Scanner = Annotated[str, Meta(min_length=1, max_length=50)]
Note = Annotated[str, Meta(max_length=1000)]


class Profile(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a project is, for policies to refer to (stricter rules for riskier services)."""

    criticality: Criticality = "medium"
    data_classification: Classification = "internal"
    internet_facing: bool = False
    owner_team: Annotated[str, LINE, Meta(max_length=100)] | None = None

    def __post_init__(self) -> None:
        refuse_unstorable(self)


class When(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A rule applies only to projects whose profile matches every field given here."""

    criticality: list[Criticality] | None = None
    data_classification: list[Classification] | None = None
    internet_facing: bool | None = None
    owner_team: list[str] | None = None


class Rule(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    """Common fields of every rule. `id` names the rule in decisions and in tightening."""

    id: RuleId
    description: Note | None = None
    when: When | None = None


class MaxFindings(Rule, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="max_findings"):
    """At most `max` open findings of `severity` or worse (only SLA-overdue ones if asked)."""

    severity: Severity
    max: Annotated[int, Meta(ge=0)]
    overdue_only: bool = False


class RequiredScans(
    Rule, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="required_scans"
):
    """A scan by each scanner, of the promoted commit, newer than `max_age_hours`."""

    scanners: Annotated[list[Scanner], Meta(min_length=1, max_length=20)]
    max_age_hours: Hours = 24.0
    full: bool = True


class NoSecrets(Rule, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="no_secrets"):
    """No open finding from a secret scanner or of a hard-coded-credential CWE."""


class Tests(Rule, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="tests"):
    """Test results submitted for the promoted commit reach a pass rate and coverage."""

    min_pass_rate: Ratio | None = None
    min_coverage: Ratio | None = None
    suites: list[Annotated[str, Meta(max_length=100)]] | None = None
    max_age_hours: Hours | None = None


class Approvals(Rule, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="approvals"):
    """`count` distinct people holding one of `roles` approve this exact version."""

    count: Annotated[int, Meta(ge=1, le=10)] = 1
    roles: Annotated[list[Role], Meta(min_length=1)] = field(default_factory=lambda: ["approver"])
    ttl_hours: Hours = 72.0


class Sbom(Rule, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="sbom"):
    """An SBOM (CycloneDX) was submitted for the promoted commit."""


class Soak(Rule, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="soak"):
    """The version has been live in the previous environment this long, with no failed release."""

    hours: Hours


class Window(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A freeze: either absolute (`start`/`end`) or weekly (`days` between `from`/`to`, UTC)."""

    start: datetime | None = None
    end: datetime | None = None
    days: list[Weekday] | None = None
    from_: ClockTime | None = field(name="from", default=None)
    to: ClockTime | None = None
    reason: Note | None = None


class Freeze(Rule, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="freeze"):
    """No promotion while any window is open."""

    windows: Annotated[list[Window], Meta(min_length=1, max_length=100)]


class Expression(Rule, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="expression"):
    """A CEL expression over the evaluation's facts; it must evaluate to true to pass."""

    expr: Annotated[str, Meta(min_length=1, max_length=2000)]
    message: Note | None = None


AnyRule = (
    MaxFindings | RequiredScans | NoSecrets | Tests | Approvals | Sbom | Soak | Freeze | Expression
)


#: The longest exception expiry when no policy sets one.
DEFAULT_EXCEPTION_MAX_DAYS = 90


class PolicyDocument(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A gate policy for one environment (an org baseline or a project's own)."""

    rules: Annotated[list[AnyRule], Meta(max_length=200)] = []
    #: The longest expiry an exception (risk acceptance) may be granted for.
    #: (When absent: the baseline's, else DEFAULT_EXCEPTION_MAX_DAYS.)
    exception_max_days: Annotated[int, Meta(ge=1, le=365)] | None = None
    description: Note | None = None


RULE_KINDS = tuple(cls.__struct_config__.tag for cls in AnyRule.__args__)
