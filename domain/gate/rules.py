"""Each kind of policy rule checked against the facts: an `Outcome` per rule (pure).

Expression rules are CEL (`cel` package) evaluated over `EXPRESSION_VARIABLES`:
  * `findings`: map of counts of open, not-excepted findings — `critical`, `high`, `medium`,
    `low`, `info`, `overdue` (SLA due at or before now), `secrets` (see `is_secret`), `total`;
  * `profile`: `criticality`, `data_classification`, `internet_facing`, `owner_team` ("" when
    unset);
  * `environment`: the target environment; `version`: the promoted version;
  * `scans`: sorted, lower-cased tools with a scan of the promoted commit;
  * `tests`: `pass_rate` and `coverage` over the newest result per suite (-1.0 when unknown);
  * `approvals`: the number of distinct valid approvers, of any role.
  The rule passes only when the expression yields exactly `true`; any other value or any
  error fails the rule with the reason as its message (evaluation never raises).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import cel

from contracts.policy import (
    AnyRule,
    Approvals,
    Expression,
    Freeze,
    MaxFindings,
    NoSecrets,
    RequiredScans,
    Sbom,
    Soak,
    Tests,
)
from domain.gate.explain import percent, plural, severity_label, show
from domain.gate.inputs import RuleResult, RuleStatus, TestFact, utc_time
from domain.gate.tally import Count, Facts, coverage_of, pass_rate_of
from domain.gate.windows import frozen_until, window_end

Source = Literal["baseline", "project"]
SBOM_FORMATS = frozenset({"cyclonedx", "spdx"})
EXPRESSION_VARIABLES = (
    "findings",
    "profile",
    "environment",
    "version",
    "scans",
    "tests",
    "approvals",
)


@dataclass(slots=True)
class Outcome:
    """What one rule found (`result` makes it the decision's `RuleResult`)."""

    status: RuleStatus
    observed: Any = None
    threshold: Any = None
    message: str = ""
    hint: str = ""
    finding_ids: list[str] = field(default_factory=list)
    finding_count: int = 0
    exception_ids: list[str] = field(default_factory=list)
    approval_ids: list[str] = field(default_factory=list)
    scan_ids: list[str] = field(default_factory=list)
    test_ids: list[str] = field(default_factory=list)
    rejected: bool = False

    def result(self, rule: AnyRule, source: Source) -> RuleResult:
        return RuleResult(
            rule_id=rule.id,
            kind=str(rule.__struct_config__.tag),
            source=source,
            status=self.status,
            observed=self.observed,
            threshold=self.threshold,
            message=self.message,
            hint=self.hint if self.status == "failed" else "",
            finding_ids=self.finding_ids,
            finding_count=self.finding_count,
            exception_ids=self.exception_ids,
            approval_ids=self.approval_ids,
            scan_ids=self.scan_ids,
            test_ids=self.test_ids,
        )


def _verdict(ok: bool) -> RuleStatus:
    return "passed" if ok else "failed"


def check_rule(rule: AnyRule, facts: Facts) -> Outcome:
    """The rule's outcome on these facts (whether it applies is the caller's question)."""
    match rule:
        case MaxFindings():
            return _max_findings(rule, facts)
        case RequiredScans():
            return _required_scans(rule, facts)
        case NoSecrets():
            return _no_secrets(facts)
        case Tests():
            return _tests(rule, facts)
        case Approvals():
            return _approvals(rule, facts)
        case Sbom():
            return _sbom(facts)
        case Soak():
            return _soak(rule, facts)
        case Freeze():
            return _freeze(rule, facts)
        case Expression():
            return _expression(rule, facts)


def _max_findings(rule: MaxFindings, facts: Facts) -> Outcome:
    counted = facts.findings(rule.severity, rule.overdue_only)
    what = severity_label(rule.severity) + (" SLA-overdue" if rule.overdue_only else "")
    excess = counted.count - rule.max
    return Outcome(
        _verdict(excess <= 0),
        observed=counted.count,
        threshold=rule.max,
        message=(
            f"{plural(counted.count, f'open {what} finding')} (max {rule.max})"
            + counted.excepted_note()
        ),
        hint=f"fix or except {plural(excess, 'more ' + what + ' finding')}",
        finding_ids=counted.first_ids,
        finding_count=counted.count,
        exception_ids=counted.exception_ids,
    )


def _no_secrets(facts: Facts) -> Outcome:
    counted = Count.of([facts.secrets])
    return Outcome(
        _verdict(counted.count == 0),
        observed=counted.count,
        threshold=0,
        message=plural(counted.count, "open secret finding") + counted.excepted_note(),
        hint="remove and rotate the leaked secrets, then rescan (or except false positives)",
        finding_ids=counted.first_ids,
        finding_count=counted.count,
        exception_ids=counted.exception_ids,
    )


def _required_scans(rule: RequiredScans, facts: Facts) -> Outcome:
    short = facts.inputs.commit[:12]
    observed: dict[str, float | None] = {}
    missing: list[str] = []
    stale: list[str] = []
    ages: list[str] = []
    used: list[str] = []
    for scanner in rule.scanners:
        candidates = [
            s for s in facts.scans.get(scanner.lower(), ()) if s.fact.full or not rule.full
        ]
        if not candidates:
            observed[scanner] = None
            missing.append(scanner)
            continue
        newest = max(candidates, key=lambda s: (s.at, s.fact.id))
        age = max(0.0, (facts.now - newest.at).total_seconds() / 3600)
        observed[scanner] = round(age, 2)
        if age > rule.max_age_hours:
            stale.append(scanner)
            ages.append(f"{scanner} ({age:.1f}h old)")
        else:
            used.append(newest.fact.id)
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if stale:
        problems.append("stale " + ", ".join(ages))
    kind = "full scan" if rule.full else "scan"
    message = (
        "; ".join(problems) + f" (need a {kind} of {short} newer than {rule.max_age_hours:g}h)"
        if problems
        else f"{plural(len(used), kind)} of {short} within {rule.max_age_hours:g}h"
    )
    return Outcome(
        _verdict(not problems),
        observed=observed,
        threshold=rule.max_age_hours,
        message=message,
        hint=f"submit a {kind} of commit {short} by " + ", ".join(missing + stale),
        scan_ids=sorted(used),
    )


def _tests(rule: Tests, facts: Facts) -> Outcome:
    used = facts.newest_tests(rule.suites, rule.max_age_hours)
    pass_rate, coverage = pass_rate_of(used), coverage_of(used)
    problems = _test_problems(rule, used, pass_rate, coverage, facts.inputs.commit[:12])
    message = f"{plural(len(used), 'suite')}: pass rate {percent(pass_rate)}, "
    message += f"coverage {percent(coverage)}"
    return Outcome(
        _verdict(not problems),
        observed={"pass_rate": _round(pass_rate), "coverage": _round(coverage)},
        threshold={"min_pass_rate": rule.min_pass_rate, "min_coverage": rule.min_coverage},
        message="; ".join(problem for problem, _ in problems) or message,
        hint="; ".join(hint for _, hint in problems),
        test_ids=sorted(t.id for t in used),
    )


def _test_problems(
    rule: Tests,
    used: Sequence[TestFact],
    pass_rate: float | None,
    coverage: float | None,
    commit: str,
) -> list[tuple[str, str]]:
    """What keeps the tests rule from passing, each with what would fix it."""
    if not used:
        age = "" if rule.max_age_hours is None else f" within {rule.max_age_hours:g}h"
        return [(f"no test results{age}", f"submit test results for commit {commit}")]
    problems: list[tuple[str, str]] = []
    if missing := sorted(set(rule.suites or ()) - {t.suite for t in used}):
        problems.append(
            (f"no results for suite {', '.join(missing)}", f"run them on commit {commit}")
        )
    if rule.min_pass_rate is not None:
        if pass_rate is None:
            problems.append(("no test was run (all skipped)", "run the tests"))
        elif pass_rate < rule.min_pass_rate:
            problems.append(
                (
                    f"pass rate {pass_rate:.2%} < {rule.min_pass_rate:.2%}",
                    "fix the failing tests",
                )
            )
    if rule.min_coverage is not None:
        wanted = f"raise coverage to at least {rule.min_coverage:.2%}"
        if coverage is None:
            problems.append(("no coverage reported", f"report coverage; {wanted}"))
        elif coverage < rule.min_coverage:
            problems.append((f"coverage {coverage:.2%} < {rule.min_coverage:.2%}", wanted))
    return problems


def _approvals(rule: Approvals, facts: Facts) -> Outcome:
    votes = facts.votes(frozenset(rule.roles))
    roles = " or ".join(rule.roles)
    if votes.rejections:
        at, actor, request_id = votes.rejections[0]
        more = len(votes.rejections) - 1
        return Outcome(
            "failed",
            observed=len(votes.approvers),
            threshold=rule.count,
            message=f"rejected by {actor} on request {request_id} at {at}"
            + (f" (and {plural(more, 'more rejection')})" if more else ""),
            hint="address the rejection and request approval of a new version",
            approval_ids=sorted({*votes.request_ids, *(r[2] for r in votes.rejections)}),
            rejected=True,
        )
    have = len(votes.approvers)
    message = f"{have} of {rule.count} approvals"
    if votes.approvers:
        message += " (" + ", ".join(votes.approvers) + ")"
    return Outcome(
        _verdict(have >= rule.count),
        observed=have,
        threshold=rule.count,
        message=message,
        hint=f"needs {plural(rule.count - have, 'more approval')} from a {roles} "
        "other than the requester and the author",
        approval_ids=votes.request_ids,
    )


def _sbom(facts: Facts) -> Outcome:
    sboms = sorted(
        scan.id
        for scan in facts.inputs.scans
        if scan.format.lower() in SBOM_FORMATS and scan.commit == facts.inputs.commit
    )
    short = facts.inputs.commit[:12]
    return Outcome(
        _verdict(bool(sboms)),
        observed=len(sboms),
        threshold=1,
        message=f"{plural(len(sboms), 'SBOM')} for commit {short}",
        hint=f"submit a CycloneDX or SPDX SBOM of commit {short}",
        scan_ids=sboms,
    )


def _soak(rule: Soak, facts: Facts) -> Outcome:
    inputs = facts.inputs
    if inputs.from_environment is None:
        return Outcome("not_applicable", message="first environment: nothing to soak in")
    previous = inputs.previous
    where = inputs.from_environment
    if previous is None or previous.live_since is None:
        return Outcome(
            "failed",
            observed=0.0,
            threshold=rule.hours,
            message=f"version {inputs.version} is not live in {where}",
            hint=f"release {inputs.version} to {where} and let it run {rule.hours:g}h",
        )
    if previous.failed:
        return Outcome(
            "failed",
            observed=None,
            threshold=rule.hours,
            message=f"a release of {inputs.version} in {where} failed or was rolled back",
            hint=f"release a version that runs cleanly in {where}",
        )
    since = utc_time(previous.live_since)
    hours = (facts.now - since).total_seconds() / 3600
    ready = since + timedelta(hours=rule.hours)
    return Outcome(
        _verdict(hours >= rule.hours),
        observed=round(hours, 2),
        threshold=rule.hours,
        message=f"live in {where} for {hours:.2f}h (need {rule.hours:g}h)",
        hint=f"wait {rule.hours - hours:.2f}h more (until {ready.isoformat()})",
    )


def _freeze(rule: Freeze, facts: Facts) -> Outcome:
    now = facts.now
    active = [(i, w) for i, w in enumerate(rule.windows) if window_end(w, now) is not False]
    if not active:
        return Outcome("passed", message="no freeze window is open")
    names = [w.reason or f"window {i + 1}" for i, w in active]
    until = frozen_until(rule.windows, now)
    when = "until further notice" if until is None else f"until {until.isoformat()}"
    return Outcome(
        "failed",
        observed=names,
        message=f"frozen: {'; '.join(names)} ({when})",
        hint="wait for the freeze to end"
        if until is None
        else f"promote after {until.isoformat()}",
    )


def _expression(rule: Expression, facts: Facts) -> Outcome:
    try:
        value = _compiled(rule.expr).execute(facts.context())
    except Exception as exc:  # CEL raises parse, type, lookup and arithmetic errors alike
        return Outcome(
            "failed",
            threshold=rule.expr,
            message=f"expression error: {exc}",
            hint="fix the expression; variables: " + ", ".join(EXPRESSION_VARIABLES),
        )
    if not isinstance(value, bool):
        return Outcome(
            "failed",
            observed=show(value),
            threshold=rule.expr,
            message=f"expression gave {type(value).__name__} {show(value)}, not a bool",
            hint="make the expression return true or false",
        )
    return Outcome(
        _verdict(value),
        observed=value,
        threshold=rule.expr,
        message=(rule.message or f"{rule.expr} is false") if not value else f"{rule.expr}",
        hint=rule.description or f"make `{rule.expr}` true",
    )


@functools.lru_cache(maxsize=512)
def _compiled(expr: str) -> cel.Program:
    return cel.compile(expr)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
