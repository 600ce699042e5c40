"""Tightening: a project policy inherits its environment's org baseline and may only tighten it.

A project rule with a baseline rule's id must be the same kind, with the same `when`, and at
least as strict; `effective_rules` keeps both rules when it is not, so loosening a baseline
never lets a project escape it.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from contracts.policy import (
    DEFAULT_EXCEPTION_MAX_DAYS,
    AnyRule,
    Approvals,
    Expression,
    Freeze,
    MaxFindings,
    NoSecrets,
    PolicyDocument,
    RequiredScans,
    Sbom,
    Severity,
    Soak,
    Tests,
    Window,
)
from domain.policy.parse import PolicyError

#: Most severe first; a threshold counts its own severity and every worse one.
SEVERITY_RANK: dict[Severity, int] = {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}

Source = Literal["baseline", "project"]


def tightening_errors(baseline: PolicyDocument, project: PolicyDocument) -> list[PolicyError]:
    """Where `project` is looser than `baseline` (locations in the project document)."""
    errors: list[PolicyError] = []
    if (
        project.exception_max_days is not None
        and baseline.exception_max_days is not None
        and project.exception_max_days > baseline.exception_max_days
    ):
        errors.append(
            PolicyError(
                "exception_max_days",
                None,
                None,
                f"{project.exception_max_days} days exceeds the baseline's "
                f"{baseline.exception_max_days}",
            )
        )
    by_id = {rule.id: rule for rule in baseline.rules}
    for i, rule in enumerate(project.rules):
        base = by_id.get(rule.id)
        if base is None:
            continue
        for field, message in _loosenings(base, rule):
            location = f"rules[{i}]" + (f".{field}" if field else "")
            errors.append(PolicyError(location, None, None, message))
    return errors


def _loosenings(base: AnyRule, rule: AnyRule) -> list[tuple[str, str]]:
    """(field, why) for each way `rule` is looser than the baseline rule with its id."""
    if type(rule) is not type(base):
        kind, base_kind = _kind(rule), _kind(base)
        return [("kind", f"is {kind} but baseline rule '{base.id}' is {base_kind}")]
    found: list[tuple[str, str]] = []
    if rule.when != base.when:
        found.append(("when", f"must keep the when of baseline rule '{base.id}'"))
    match base, rule:
        case MaxFindings(), MaxFindings():
            found += _max_findings(base, rule)
        case RequiredScans(), RequiredScans():
            found += _required_scans(base, rule)
        case Tests(), Tests():
            found += _tests(base, rule)
        case Approvals(), Approvals():
            found += _approvals(base, rule)
        case Soak(), Soak():
            if rule.hours < base.hours:
                found.append(
                    ("hours", f"{rule.hours:g} is less than the baseline's {base.hours:g}")
                )
        case Freeze(), Freeze():
            kept = {_window_key(w) for w in rule.windows}
            found += [
                ("windows", f"drops the baseline window {_describe(w)}")
                for w in base.windows
                if _window_key(w) not in kept
            ]
        case Expression(), Expression():
            if rule.expr != base.expr:
                found.append(("expr", f"must equal the expr of baseline rule '{base.id}'"))
        case (NoSecrets(), NoSecrets()) | (Sbom(), Sbom()):
            pass
    return found


def _kind(rule: AnyRule) -> str:
    return str(type(rule).__struct_config__.tag)


def _max_findings(base: MaxFindings, rule: MaxFindings) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if rule.max > base.max:
        found.append(("max", f"{rule.max} allows more than the baseline's {base.max}"))
    if SEVERITY_RANK[rule.severity] > SEVERITY_RANK[base.severity]:
        found.append(
            (
                "severity",
                f"{rule.severity} counts fewer findings than the baseline's {base.severity}",
            )
        )
    if rule.overdue_only and not base.overdue_only:
        found.append(("overdue_only", "the baseline counts every finding, not only overdue ones"))
    return found


def _required_scans(base: RequiredScans, rule: RequiredScans) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    missing = sorted(set(base.scanners) - set(rule.scanners))
    if missing:
        found.append(("scanners", f"drops baseline scanners: {', '.join(missing)}"))
    if rule.max_age_hours > base.max_age_hours:
        found.append(
            (
                "max_age_hours",
                f"{rule.max_age_hours:g} exceeds the baseline's {base.max_age_hours:g}",
            )
        )
    if base.full and not rule.full:
        found.append(("full", "the baseline requires full scans"))
    return found


def _tests(base: Tests, rule: Tests) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name in ("min_pass_rate", "min_coverage"):
        floor, value = getattr(base, name), getattr(rule, name)
        if floor is not None and (value is None or value < floor):
            found.append((name, f"must be at least the baseline's {floor:g}"))
    if base.suites is not None:
        missing = sorted(set(base.suites) - set(rule.suites or ()))
        if missing:
            found.append(("suites", f"drops baseline suites: {', '.join(missing)}"))
    if base.max_age_hours is not None and (
        rule.max_age_hours is None or rule.max_age_hours > base.max_age_hours
    ):
        found.append(("max_age_hours", f"must be at most the baseline's {base.max_age_hours:g}"))
    return found


def _approvals(base: Approvals, rule: Approvals) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if rule.count < base.count:
        found.append(("count", f"{rule.count} is fewer than the baseline's {base.count}"))
    extra = sorted(set(rule.roles) - set(base.roles))
    if extra:
        found.append(("roles", f"adds roles the baseline does not accept: {', '.join(extra)}"))
    if rule.ttl_hours > base.ttl_hours:
        found.append(("ttl_hours", f"{rule.ttl_hours:g} exceeds the baseline's {base.ttl_hours:g}"))
    return found


def _window_key(window: Window) -> bytes:
    """A window without its reason: rewording a reason keeps the window."""
    return msgspec.json.encode(msgspec.structs.replace(window, reason=None))


def _describe(window: Window) -> str:
    if window.start is not None and window.end is not None:
        return f"{window.start.isoformat()}..{window.end.isoformat()}"
    return f"{','.join(window.days or [])} {window.from_}-{window.to}"


def effective_rules(
    baseline: PolicyDocument | None, project: PolicyDocument | None
) -> list[tuple[Source, AnyRule]]:
    """Baseline rules, then project rules; a project rule replaces only a rule it tightens."""
    base_rules = baseline.rules if baseline else []
    project_rules = project.rules if project else []
    by_id = {rule.id: rule for rule in base_rules}
    replaced = {
        rule.id
        for rule in project_rules
        if rule.id in by_id and not _loosenings(by_id[rule.id], rule)
    }
    kept: list[tuple[Source, AnyRule]] = [
        ("baseline", rule) for rule in base_rules if rule.id not in replaced
    ]
    return kept + [("project", rule) for rule in project_rules]


def effective_exception_max_days(
    baseline: PolicyDocument | None, project: PolicyDocument | None
) -> int:
    """The shortest exception expiry either policy allows (the contract default without any)."""
    days = [
        doc.exception_max_days
        for doc in (baseline, project)
        if doc is not None and doc.exception_max_days is not None
    ]
    return min(days, default=DEFAULT_EXCEPTION_MAX_DAYS)
