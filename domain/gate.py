"""Gate evaluation: a policy's rules applied to `GateInputs`, giving a `Decision` (pure).

`evaluate` does no I/O and reads no clock (`inputs.now` is the time). It is deterministic: the
same inputs, in any order, give an identical `Decision` — it evaluates the canonical (sorted)
inputs, every id list in a result is sorted, and ties between facts are broken by id.

Facts that count
  * Findings: status `open` or `reopened`, not covered by an exception. An exception covers a
    finding when it is for this environment (or all), names the finding's id, its rule id or
    one of its CWEs, and expires after `now`. Each rule lists the exceptions that covered a
    finding it looked at (`exception_ids`) and says how many findings they excepted.
  * Approvals: an `approve` decision on a request for this exact `version_digest` (status
    pending or approved, expiring after `now`), made before the request expired and not after
    `now`, by an actor who is neither the promotion's requester, the request's requester nor
    the version's author, holding one of the rule's roles. An actor counts once, across
    requests; their latest decision on a request is the one that counts. An eligible `reject`
    on such a request (status pending, approved or rejected) fails the rule and the decision.

Result: `failed` when any rule other than `approvals` failed, or an approvals rule failed with
a rejection; `awaiting_approval` when only approvals are missing; otherwise `passed`.

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
import heapq
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Literal

import cel
import msgspec

from contracts.policy import (
    AnyRule,
    Approvals,
    Expression,
    Freeze,
    MaxFindings,
    NoSecrets,
    Profile,
    RequiredScans,
    Sbom,
    Soak,
    Tests,
    When,
    Window,
)
from domain.finding import OPEN_STATUSES, SEVERITIES
from domain.gate_inputs import (
    ApprovalFact,
    Decision,
    ExceptionFact,
    FindingFact,
    GateInputs,
    Result,
    RuleResult,
    RuleStatus,
    ScanFact,
    TestFact,
    canonical_digest,
)

Source = Literal["baseline", "project"]

SECRET_TOOLS = frozenset({"gitleaks", "trufflehog", "detect-secrets", "ggshield"})
SECRET_CWES = frozenset({"CWE-798", "CWE-259", "CWE-321", "CWE-522"})
SBOM_FORMATS = frozenset({"cyclonedx", "spdx"})
APPROVABLE_STATUSES = frozenset({"pending", "approved"})
REJECTABLE_STATUSES = frozenset({"pending", "approved", "rejected"})
MAX_LISTED_FINDINGS = 100
EXPRESSION_VARIABLES = (
    "findings",
    "profile",
    "environment",
    "version",
    "scans",
    "tests",
    "approvals",
)

_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}
_INFO_BASE = 2 * _RANK["info"]
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = 86_400
_FREEZE_HORIZON = timedelta(days=366)
#: Distinct kinds of findings worth memoising while they are at most half the findings seen.
_KINDS_AT_LEAST = 512


def evaluate(rules: Sequence[tuple[Source, AnyRule]], inputs: GateInputs) -> Decision:
    """Apply every rule, in policy order, to the inputs; decide passed / failed / awaiting."""
    canonical = inputs.canonical()
    facts = _Facts(canonical)
    results: list[RuleResult] = []
    rejected = False
    for source, rule in rules:
        outcome = _evaluate_rule(rule, facts)
        rejected = rejected or outcome.rejected
        results.append(outcome.result(rule, source))
    return Decision(
        result=_overall(results, rejected),
        rules=results,
        inputs_digest=canonical_digest(canonical),
        evaluated_at=inputs.now,
    )


def is_secret(f: FindingFact) -> bool:
    """A finding of a secret scanner, a hard-coded-credential CWE or a "secret" rule.

    The tool and rule id match in any case; sources (tool names) and CWE ids as the parsers
    spell them (`gitleaks`, `CWE-798`).
    """
    return (
        _secret_tool(f.tool)
        or _secret_rule(f.rule_id)
        or not SECRET_CWES.isdisjoint(f.cwe)
        or not SECRET_TOOLS.isdisjoint(f.sources)
    )


def _secret_tool(tool: str) -> bool:
    return tool.lower() in SECRET_TOOLS


def _secret_rule(rule_id: str) -> bool:
    return "secret" in rule_id.lower()


def summary(decision: Decision) -> dict[str, int]:
    """How many rules passed, failed and did not apply."""
    counts = {"passed": 0, "failed": 0, "not_applicable": 0}
    for rule in decision.rules:
        counts[rule.status] += 1
    return counts


def explain(decision: Decision) -> str:
    """A readable account: the verdict, then failed, passed and not-applicable rules."""
    counts = summary(decision)
    lines = [
        f"Gate {decision.result.upper().replace('_', ' ')} at {decision.evaluated_at}",
        f"inputs {decision.inputs_digest}",
        f"{counts['failed']} failed, {counts['passed']} passed, "
        f"{counts['not_applicable']} not applicable",
    ]
    for status, title in (
        ("failed", "Failed"),
        ("passed", "Passed"),
        ("not_applicable", "Not applicable"),
    ):
        group = [rule for rule in decision.rules if rule.status == status]
        if group:
            lines += ["", f"{title}:"]
            lines += [line for rule in group for line in _explain_rule(rule)]
    return "\n".join(lines)


def _explain_rule(rule: RuleResult) -> list[str]:
    lines = [f"  - {rule.rule_id} ({rule.kind}, {rule.source}): {rule.message}".rstrip(": ")]
    if rule.status == "not_applicable":
        return lines
    if rule.threshold is not None:
        lines.append(f"      observed {_show(rule.observed)}, threshold {_show(rule.threshold)}")
    elif rule.observed is not None:
        lines.append(f"      observed {_show(rule.observed)}")
    if rule.hint:
        lines.append(f"      hint: {rule.hint}")
    return lines


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


def _overall(results: Sequence[RuleResult], rejected: bool) -> Result:
    failed = [rule for rule in results if rule.status == "failed"]
    if rejected or any(rule.kind != "approvals" for rule in failed):
        return "failed"
    return "awaiting_approval" if failed else "passed"


# --- outcome of one rule -----------------------------------------------------------------------


@dataclass(slots=True)
class _Outcome:
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


def _evaluate_rule(rule: AnyRule, facts: _Facts) -> _Outcome:
    if not applies(rule.when, facts.inputs.profile):
        return _Outcome("not_applicable", message="the project's profile does not match `when`")
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


def applies(when: When | None, profile: Profile) -> bool:
    if when is None:
        return True
    return (
        (when.criticality is None or profile.criticality in when.criticality)
        and (
            when.data_classification is None
            or profile.data_classification in when.data_classification
        )
        and (when.internet_facing is None or profile.internet_facing == when.internet_facing)
        and (when.owner_team is None or profile.owner_team in when.owner_team)
    )


# --- facts, gathered once per evaluation --------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    """Open findings of one kind: the counted ids (in id order) and what exceptions covered."""

    ids: list[str] = field(default_factory=list)
    excepted: int = 0
    exception_ids: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Count:
    """Several tallies combined, as a rule reports them."""

    count: int
    first_ids: list[str]
    excepted: int
    exception_ids: list[str]

    @classmethod
    def of(cls, tallies: Sequence[_Tally]) -> _Count:
        first = list(islice(heapq.merge(*(t.ids for t in tallies)), MAX_LISTED_FINDINGS))
        return cls(
            count=sum(len(t.ids) for t in tallies),
            first_ids=first,
            excepted=sum(t.excepted for t in tallies),
            exception_ids=sorted(set().union(*(t.exception_ids for t in tallies))),
        )

    def excepted_note(self) -> str:
        if not self.excepted:
            return ""
        return (
            f"; {_plural(self.excepted, 'finding')} excepted by "
            f"{_plural(len(self.exception_ids), 'exception')}"
        )


@dataclass(slots=True)
class _Kind:
    """Open findings alike in all but their id: where they count and what excepts them."""

    tally: _Tally
    #: Exceptions naming their rule id or one of their CWEs.
    hits: tuple[str, ...]
    secret: bool
    #: How many of them `hits` excepted (added to the tallies at the end, at once).
    excepted: int = 0

    def except_one(self, hits: tuple[str, ...], secrets: _Tally) -> None:
        """A finding of this kind that exceptions naming its id cover (`hits`: all of them)."""
        for tally in (self.tally, secrets) if self.secret else (self.tally,):
            tally.excepted += 1
            tally.exception_ids.update(hits)

    def except_all(self, secrets: _Tally) -> None:
        if not self.excepted:
            return
        for tally in (self.tally, secrets) if self.secret else (self.tally,):
            tally.excepted += self.excepted
            tally.exception_ids.update(self.hits)


class _ExceptionIndex:
    """Live exceptions by what they name: finding id, rule id, CWE (dict lookups per finding)."""

    def __init__(self, exceptions: Iterable[ExceptionFact], environment: str, now: datetime):
        self.by_finding: dict[str, tuple[str, ...]] = {}
        self.by_rule: dict[str, tuple[str, ...]] = {}
        self.by_cwe: dict[str, tuple[str, ...]] = {}
        for exc in exceptions:
            if exc.environment not in (None, environment) or _at(exc.expires_at) <= now:
                continue
            for finding_id in exc.finding_ids:
                self.by_finding[finding_id] = (*self.by_finding.get(finding_id, ()), exc.id)
            if exc.rule_id:
                self.by_rule[exc.rule_id] = (*self.by_rule.get(exc.rule_id, ()), exc.id)
            if exc.cwe:
                cwe = exc.cwe.upper()  # findings carry the parsers' spelling, "CWE-79"
                self.by_cwe[cwe] = (*self.by_cwe.get(cwe, ()), exc.id)

    def __bool__(self) -> bool:
        return bool(self.by_finding or self.by_rule or self.by_cwe)


@dataclass(frozen=True, slots=True)
class _Scan:
    at: datetime
    fact: ScanFact


@dataclass(frozen=True, slots=True)
class _Votes:
    approvers: list[str]
    request_ids: list[str]
    #: (time, actor, request id) of each eligible rejection, oldest first.
    rejections: list[tuple[str, str, str]]


class _Facts:
    """What the rules look at, computed once: tallies of findings, scans by tool, tests."""

    def __init__(self, inputs: GateInputs) -> None:
        self.inputs = inputs
        self.now = _at(inputs.now)
        self.now_text = self.now.isoformat()
        #: Tallies of open findings at index `2 * severity rank + overdue`.
        self.tallies = [_Tally() for _ in range(2 * len(SEVERITIES))]
        self.secrets = _Tally()
        self._tally_findings()
        self.scans: dict[str, list[_Scan]] = {}
        for scan in inputs.scans:
            if scan.commit == inputs.commit:
                self.scans.setdefault(scan.tool.lower(), []).append(
                    _Scan(_at(scan.submitted_at), scan)
                )
        self._context: dict[str, Any] | None = None

    def _tally_findings(self) -> None:
        """One pass over the findings: the hot loop (10,000s of them).

        Findings of one scan mostly share a severity, SLA due time, rule, CWEs, tool and
        sources, so what follows from those (tally, exceptions by rule or CWE, is it a
        secret) is worked out once per distinct combination (`_Kind`); per finding there
        remain the exceptions naming its id and the counted id. When the combinations hardly
        repeat, the rest are counted one by one (`_tally_each`), which is then cheaper.
        """
        index = _ExceptionIndex(self.inputs.exceptions, self.inputs.environment, self.now)
        by_finding = index.by_finding
        kinds: dict[tuple[Any, ...], _Kind] = {}
        secrets = self.secrets
        findings = iter(self.inputs.findings)
        for seen, f in enumerate(findings):
            if f.status not in OPEN_STATUSES:
                continue
            key = (f.severity, f.sla_due, f.rule_id, f.tool, f.cwe, f.sources)
            kind = kinds.get(key)
            if kind is None:
                if len(kinds) >= _KINDS_AT_LEAST and 2 * len(kinds) > seen:
                    self._tally_each(itertools.chain((f,), findings), index)
                    break
                kind = kinds[key] = self._kind(f, index)
            own = by_finding.get(f.id) if by_finding else None
            if own:
                kind.except_one(own + kind.hits, secrets)
            elif kind.hits:
                kind.excepted += 1
            else:
                kind.tally.ids.append(f.id)
                if kind.secret:
                    secrets.ids.append(f.id)
        for kind in kinds.values():
            kind.except_all(secrets)

    def _kind(self, f: FindingFact, index: _ExceptionIndex) -> _Kind:
        hits = index.by_rule.get(f.rule_id, ())
        for cwe in f.cwe:
            hits += index.by_cwe.get(cwe, ())
        return _Kind(self.tallies[self._slot(f.severity, f.sla_due)], hits, is_secret(f))

    def _slot(self, severity: str, due: str | None) -> int:
        """The tally of open findings of this severity and SLA due time."""
        # `utc_iso` spellings (fixed width up to the seconds, then "+" or ".") order as text,
        # so the usual case needs no parsing; anything else is parsed.
        overdue = due is not None and (
            due <= self.now_text
            if due.endswith("+00:00") and len(due) in (25, 32)
            else _at(due) <= self.now
        )
        rank = _RANK.get(severity)
        return (_INFO_BASE if rank is None else 2 * rank) + overdue

    def _tally_each(self, findings: Iterable[FindingFact], index: _ExceptionIndex) -> None:
        """`_tally_findings` for findings alike in little: each one worked out on its own
        (the same rules as `_kind`, with the few distinct tools and rule ids memoised)."""
        by_finding, by_rule, by_cwe = index.by_finding, index.by_rule, index.by_cwe
        tallies, secrets, now, now_text = self.tallies, self.secrets, self.now, self.now_text
        base = {severity: 2 * rank for severity, rank in _RANK.items()}
        secret_tool: dict[str, bool] = {}
        secret_rule: dict[str, bool] = {}
        for f in findings:
            if f.status not in OPEN_STATUSES:
                continue
            hits = by_finding.get(f.id, ()) + by_rule.get(f.rule_id, ())
            if by_cwe:
                for cwe in f.cwe:
                    hits += by_cwe.get(cwe, ())
            due = f.sla_due  # as in `_slot`, inlined
            overdue = due is not None and (
                due <= now_text
                if due.endswith("+00:00") and len(due) in (25, 32)
                else _at(due) <= now
            )
            tally = tallies[base.get(f.severity, _INFO_BASE) + overdue]
            if hits:
                tally.excepted += 1
                tally.exception_ids.update(hits)
            else:
                tally.ids.append(f.id)
            secret = secret_tool.get(f.tool)
            if secret is None:
                secret = secret_tool[f.tool] = _secret_tool(f.tool)
            if not secret:
                secret = secret_rule.get(f.rule_id)
                if secret is None:
                    secret = secret_rule[f.rule_id] = _secret_rule(f.rule_id)
            if not (
                secret
                or (f.cwe and not SECRET_CWES.isdisjoint(f.cwe))
                or (f.sources and not SECRET_TOOLS.isdisjoint(f.sources))
            ):
                continue
            if hits:
                secrets.excepted += 1
                secrets.exception_ids.update(hits)
            else:
                secrets.ids.append(f.id)

    def findings(self, severity: str, overdue_only: bool) -> _Count:
        ranks = range(_RANK[severity] + 1)
        dues = (1,) if overdue_only else (0, 1)
        return _Count.of([self.tallies[2 * rank + due] for rank in ranks for due in dues])

    def newest_tests(self, suites: Sequence[str] | None, max_age: float | None) -> list[TestFact]:
        """The newest result per suite (ties: the greatest id), in suite order."""
        since = None if max_age is None else self.now - timedelta(hours=max_age)
        newest: dict[str, tuple[datetime, str, TestFact]] = {}
        for test in self.inputs.tests:
            if suites is not None and test.suite not in suites:
                continue
            at = _at(test.submitted_at)
            if since is not None and at < since:
                continue
            key = (at, test.id, test)
            current = newest.get(test.suite)
            if current is None or key[:2] > current[:2]:
                newest[test.suite] = key
        return [newest[suite][2] for suite in sorted(newest)]

    def votes(self, roles: frozenset[str] | None) -> _Votes:
        """Valid approvers and eligible rejections of this version (`roles` None: any role)."""
        inputs, now = self.inputs, self.now
        excluded = {inputs.requested_by, inputs.author}
        approvers: set[str] = set()
        request_ids: set[str] = set()
        rejections: list[tuple[datetime, str, str]] = []
        for request in inputs.approvals:
            expires = _live_until(request, inputs.version_digest, now)
            if expires is None:
                continue
            for actor, (at, decision, actor_roles) in _latest_decisions(request, now).items():
                if actor in excluded or actor == request.requested_by or at > expires:
                    continue
                if roles is not None and roles.isdisjoint(actor_roles):
                    continue
                if decision == "reject":
                    rejections.append((at, actor, request.id))
                elif request.status in APPROVABLE_STATUSES:
                    approvers.add(actor)
                    request_ids.add(request.id)
        rejections.sort()
        return _Votes(
            approvers=sorted(approvers),
            request_ids=sorted(request_ids),
            rejections=[(at.isoformat(), actor, rid) for at, actor, rid in rejections],
        )

    def context(self) -> dict[str, Any]:
        """The CEL variables (see the module docstring), built on first use."""
        if self._context is None:
            self._context = self._build_context()
        return self._context

    def _build_context(self) -> dict[str, Any]:
        inputs, profile = self.inputs, self.inputs.profile
        findings = {
            severity: sum(len(self.tallies[2 * rank + due].ids) for due in (0, 1))
            for severity, rank in _RANK.items()
        }
        findings["overdue"] = sum(len(self.tallies[2 * rank + 1].ids) for rank in _RANK.values())
        findings["secrets"] = len(self.secrets.ids)
        findings["total"] = sum(len(tally.ids) for tally in self.tallies)
        tests = self.newest_tests(None, None)
        pass_rate, coverage = _pass_rate(tests), _coverage(tests)
        return {
            "findings": findings,
            "profile": {
                "criticality": profile.criticality,
                "data_classification": profile.data_classification,
                "internet_facing": profile.internet_facing,
                "owner_team": profile.owner_team or "",
            },
            "environment": inputs.environment,
            "version": inputs.version,
            "scans": sorted(self.scans),
            "tests": {
                "pass_rate": -1.0 if pass_rate is None else pass_rate,
                "coverage": -1.0 if coverage is None else coverage,
            },
            "approvals": len(self.votes(None).approvers),
        }


def _live_until(request: ApprovalFact, version_digest: str, now: datetime) -> datetime | None:
    """When a request for this version expires, or None when it is not live."""
    if request.version_digest != version_digest or request.status not in REJECTABLE_STATUSES:
        return None
    expires = _at(request.expires_at)
    return expires if expires > now else None


def _latest_decisions(
    request: ApprovalFact, now: datetime
) -> dict[str, tuple[datetime, str, tuple[str, ...]]]:
    """Each actor's latest decision made by `now` (a reject wins a tie)."""
    latest: dict[str, tuple[datetime, str, tuple[str, ...]]] = {}
    for d in request.decisions:
        at = _at(d.at)
        if at > now:
            continue
        current = latest.get(d.actor)
        # "reject" > "approve": on equal times the rejection stands.
        if current is None or (at, d.decision) > current[:2]:
            latest[d.actor] = (at, d.decision, d.roles)
    return latest


# --- the rules --------------------------------------------------------------------------------


def _max_findings(rule: MaxFindings, facts: _Facts) -> _Outcome:
    counted = facts.findings(rule.severity, rule.overdue_only)
    what = _severity_label(rule.severity) + (" SLA-overdue" if rule.overdue_only else "")
    excess = counted.count - rule.max
    return _Outcome(
        _verdict(excess <= 0),
        observed=counted.count,
        threshold=rule.max,
        message=(
            f"{_plural(counted.count, f'open {what} finding')} (max {rule.max})"
            + counted.excepted_note()
        ),
        hint=f"fix or except {_plural(excess, 'more ' + what + ' finding')}",
        finding_ids=counted.first_ids,
        finding_count=counted.count,
        exception_ids=counted.exception_ids,
    )


def _no_secrets(facts: _Facts) -> _Outcome:
    counted = _Count.of([facts.secrets])
    return _Outcome(
        _verdict(counted.count == 0),
        observed=counted.count,
        threshold=0,
        message=_plural(counted.count, "open secret finding") + counted.excepted_note(),
        hint="remove and rotate the leaked secrets, then rescan (or except false positives)",
        finding_ids=counted.first_ids,
        finding_count=counted.count,
        exception_ids=counted.exception_ids,
    )


def _required_scans(rule: RequiredScans, facts: _Facts) -> _Outcome:
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
        else f"{_plural(len(used), kind)} of {short} within {rule.max_age_hours:g}h"
    )
    return _Outcome(
        _verdict(not problems),
        observed=observed,
        threshold=rule.max_age_hours,
        message=message,
        hint=f"submit a {kind} of commit {short} by " + ", ".join(missing + stale),
        scan_ids=sorted(used),
    )


def _tests(rule: Tests, facts: _Facts) -> _Outcome:
    used = facts.newest_tests(rule.suites, rule.max_age_hours)
    pass_rate, coverage = _pass_rate(used), _coverage(used)
    problems = _test_problems(rule, used, pass_rate, coverage, facts.inputs.commit[:12])
    message = f"{_plural(len(used), 'suite')}: pass rate {_percent(pass_rate)}, "
    message += f"coverage {_percent(coverage)}"
    return _Outcome(
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


def _approvals(rule: Approvals, facts: _Facts) -> _Outcome:
    votes = facts.votes(frozenset(rule.roles))
    roles = " or ".join(rule.roles)
    if votes.rejections:
        at, actor, request_id = votes.rejections[0]
        more = len(votes.rejections) - 1
        return _Outcome(
            "failed",
            observed=len(votes.approvers),
            threshold=rule.count,
            message=f"rejected by {actor} on request {request_id} at {at}"
            + (f" (and {_plural(more, 'more rejection')})" if more else ""),
            hint="address the rejection and request approval of a new version",
            approval_ids=sorted({*votes.request_ids, *(r[2] for r in votes.rejections)}),
            rejected=True,
        )
    have = len(votes.approvers)
    message = f"{have} of {rule.count} approvals"
    if votes.approvers:
        message += " (" + ", ".join(votes.approvers) + ")"
    return _Outcome(
        _verdict(have >= rule.count),
        observed=have,
        threshold=rule.count,
        message=message,
        hint=f"needs {_plural(rule.count - have, 'more approval')} from a {roles} "
        "other than the requester and the author",
        approval_ids=votes.request_ids,
    )


def _sbom(facts: _Facts) -> _Outcome:
    sboms = sorted(
        scan.id
        for scan in facts.inputs.scans
        if scan.format.lower() in SBOM_FORMATS and scan.commit == facts.inputs.commit
    )
    short = facts.inputs.commit[:12]
    return _Outcome(
        _verdict(bool(sboms)),
        observed=len(sboms),
        threshold=1,
        message=f"{_plural(len(sboms), 'SBOM')} for commit {short}",
        hint=f"submit a CycloneDX or SPDX SBOM of commit {short}",
        scan_ids=sboms,
    )


def _soak(rule: Soak, facts: _Facts) -> _Outcome:
    inputs = facts.inputs
    if inputs.from_environment is None:
        return _Outcome("not_applicable", message="first environment: nothing to soak in")
    previous = inputs.previous
    where = inputs.from_environment
    if previous is None or previous.live_since is None:
        return _Outcome(
            "failed",
            observed=0.0,
            threshold=rule.hours,
            message=f"version {inputs.version} is not live in {where}",
            hint=f"release {inputs.version} to {where} and let it run {rule.hours:g}h",
        )
    if previous.failed:
        return _Outcome(
            "failed",
            observed=None,
            threshold=rule.hours,
            message=f"a release of {inputs.version} in {where} failed or was rolled back",
            hint=f"release a version that runs cleanly in {where}",
        )
    since = _at(previous.live_since)
    hours = (facts.now - since).total_seconds() / 3600
    ready = since + timedelta(hours=rule.hours)
    return _Outcome(
        _verdict(hours >= rule.hours),
        observed=round(hours, 2),
        threshold=rule.hours,
        message=f"live in {where} for {hours:.2f}h (need {rule.hours:g}h)",
        hint=f"wait {rule.hours - hours:.2f}h more (until {ready.isoformat()})",
    )


def _freeze(rule: Freeze, facts: _Facts) -> _Outcome:
    now = facts.now
    active = [(i, w) for i, w in enumerate(rule.windows) if _window_end(w, now) is not False]
    if not active:
        return _Outcome("passed", message="no freeze window is open")
    names = [w.reason or f"window {i + 1}" for i, w in active]
    until = _frozen_until(rule.windows, now)
    when = "until further notice" if until is None else f"until {until.isoformat()}"
    return _Outcome(
        "failed",
        observed=names,
        message=f"frozen: {'; '.join(names)} ({when})",
        hint="wait for the freeze to end"
        if until is None
        else f"promote after {until.isoformat()}",
    )


def _expression(rule: Expression, facts: _Facts) -> _Outcome:
    try:
        value = _compiled(rule.expr).execute(facts.context())
    except Exception as exc:  # CEL raises parse, type, lookup and arithmetic errors alike
        return _Outcome(
            "failed",
            threshold=rule.expr,
            message=f"expression error: {exc}",
            hint="fix the expression; variables: " + ", ".join(EXPRESSION_VARIABLES),
        )
    if not isinstance(value, bool):
        return _Outcome(
            "failed",
            observed=_show(value),
            threshold=rule.expr,
            message=f"expression gave {type(value).__name__} {_show(value)}, not a bool",
            hint="make the expression return true or false",
        )
    return _Outcome(
        _verdict(value),
        observed=value,
        threshold=rule.expr,
        message=(rule.message or f"{rule.expr} is false") if not value else f"{rule.expr}",
        hint=rule.description or f"make `{rule.expr}` true",
    )


@functools.lru_cache(maxsize=512)
def _compiled(expr: str) -> cel.Program:
    return cel.compile(expr)


# --- freeze windows ---------------------------------------------------------------------------


def _window_end(window: Window, now: datetime) -> datetime | Literal[False] | None:
    """False when the window is closed at `now`; else when it closes (None: never)."""
    start, end = _aware(window.start), _aware(window.end)
    if start is None and end is None and window.days is None:
        return False
    if (start is not None and now < start) or (end is not None and now >= end):
        return False
    if window.days is None:
        return end
    weekly = _weekly_end(window, now)
    if weekly is None:
        return False
    return weekly if end is None else min(weekly, end)


def _weekly_end(window: Window, now: datetime) -> datetime | None:
    """When the weekly window open at `now` closes, or None when it is closed."""
    days = window.days or ()
    today, yesterday = _WEEKDAYS[now.weekday()], _WEEKDAYS[(now.weekday() - 1) % 7]
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    second = now.hour * 3600 + now.minute * 60 + now.second
    opens = _clock(window.from_) if window.from_ else 0
    closes = _clock(window.to) if window.to else _DAY
    if closes > opens:
        inside = today in days and opens <= second < closes
        return midnight + timedelta(seconds=closes) if inside else None
    # Wraps midnight (to <= from): from `from` on a listed day to `to` the next day.
    if today in days and second >= opens:
        return midnight + timedelta(days=1, seconds=closes)
    if yesterday in days and second < closes:
        return midnight + timedelta(seconds=closes)
    return None


def _frozen_until(windows: Sequence[Window], now: datetime) -> datetime | None:
    """The first moment no window is open (None: not within a year, or never)."""
    moment = now
    while moment - now <= _FREEZE_HORIZON:
        ends = [end for w in windows if (end := _window_end(w, moment)) is not False]
        if not ends:
            return moment
        if any(end is None for end in ends):
            return None
        moment = max(end for end in ends if end is not None)
    return None


def _clock(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60


# --- small helpers ----------------------------------------------------------------------------


def _at(value: str) -> datetime:
    """A fact's time as an aware UTC datetime (naive times are UTC)."""
    when = datetime.fromisoformat(value)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _pass_rate(tests: Sequence[TestFact]) -> float | None:
    passed = sum(t.passed for t in tests)
    ran = passed + sum(t.failed for t in tests)
    return passed / ran if ran else None


def _coverage(tests: Sequence[TestFact]) -> float | None:
    reported = [t.coverage for t in tests if t.coverage is not None]
    return min(reported) if reported else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _percent(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2%}"


def _severity_label(severity: str) -> str:
    return "critical" if severity == "critical" else f"{severity}-or-worse"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
