"""The facts a gate evaluation looks at, gathered once per evaluation (pure).

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
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from domain.finding import OPEN_STATUSES, SEVERITIES
from domain.gate.explain import plural
from domain.gate.inputs import (
    ApprovalFact,
    ExceptionFact,
    FindingFact,
    GateInputs,
    ScanFact,
    TestFact,
    utc_time,
)

SECRET_TOOLS = frozenset({"gitleaks", "trufflehog", "detect-secrets", "ggshield"})
SECRET_CWES = frozenset({"CWE-798", "CWE-259", "CWE-321", "CWE-522"})
APPROVABLE_STATUSES = frozenset({"pending", "approved"})
REJECTABLE_STATUSES = frozenset({"pending", "approved", "rejected"})
MAX_LISTED_FINDINGS = 100

_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}
_INFO_BASE = 2 * _RANK["info"]
#: Distinct kinds of findings worth memoising while they are at most half the findings seen.
KINDS_AT_LEAST = 512


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


@dataclass(slots=True)
class Tally:
    """Open findings of one kind: the counted ids (in id order) and what exceptions covered."""

    ids: list[str] = field(default_factory=list)
    excepted: int = 0
    exception_ids: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Count:
    """Several tallies combined, as a rule reports them."""

    count: int
    first_ids: list[str]
    excepted: int
    exception_ids: list[str]

    @classmethod
    def of(cls, tallies: Sequence[Tally]) -> Count:
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
            f"; {plural(self.excepted, 'finding')} excepted by "
            f"{plural(len(self.exception_ids), 'exception')}"
        )


@dataclass(slots=True)
class _Kind:
    """Open findings alike in all but their id: where they count and what excepts them."""

    tally: Tally
    #: Exceptions naming their rule id or one of their CWEs.
    hits: tuple[str, ...]
    secret: bool
    #: How many of them `hits` excepted (added to the tallies at the end, at once).
    excepted: int = 0

    def except_one(self, hits: tuple[str, ...], secrets: Tally) -> None:
        """A finding of this kind that exceptions naming its id cover (`hits`: all of them)."""
        for tally in (self.tally, secrets) if self.secret else (self.tally,):
            tally.excepted += 1
            tally.exception_ids.update(hits)

    def except_all(self, secrets: Tally) -> None:
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
            if exc.environment not in (None, environment) or utc_time(exc.expires_at) <= now:
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
class DatedScan:
    at: datetime
    fact: ScanFact


@dataclass(frozen=True, slots=True)
class Votes:
    approvers: list[str]
    request_ids: list[str]
    #: (time, actor, request id) of each eligible rejection, oldest first.
    rejections: list[tuple[str, str, str]]


class Facts:
    """What the rules look at, computed once: tallies of findings, scans by tool, tests."""

    def __init__(self, inputs: GateInputs) -> None:
        self.inputs = inputs
        self.now = utc_time(inputs.now)
        self.now_text = self.now.isoformat()
        #: Tallies of open findings at index `2 * severity rank + overdue`.
        self.tallies = [Tally() for _ in range(2 * len(SEVERITIES))]
        self.secrets = Tally()
        self._tally_findings()
        self.scans: dict[str, list[DatedScan]] = {}
        for scan in inputs.scans:
            if scan.commit == inputs.commit:
                self.scans.setdefault(scan.tool.lower(), []).append(
                    DatedScan(utc_time(scan.submitted_at), scan)
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
                if len(kinds) >= KINDS_AT_LEAST and 2 * len(kinds) > seen:
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
            else utc_time(due) <= self.now
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
                else utc_time(due) <= now
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

    def findings(self, severity: str, overdue_only: bool) -> Count:
        ranks = range(_RANK[severity] + 1)
        dues = (1,) if overdue_only else (0, 1)
        return Count.of([self.tallies[2 * rank + due] for rank in ranks for due in dues])

    def newest_tests(self, suites: Sequence[str] | None, max_age: float | None) -> list[TestFact]:
        """The newest result per suite (ties: the greatest id), in suite order."""
        since = None if max_age is None else self.now - timedelta(hours=max_age)
        newest: dict[str, tuple[datetime, str, TestFact]] = {}
        for test in self.inputs.tests:
            if suites is not None and test.suite not in suites:
                continue
            at = utc_time(test.submitted_at)
            if since is not None and at < since:
                continue
            key = (at, test.id, test)
            current = newest.get(test.suite)
            if current is None or key[:2] > current[:2]:
                newest[test.suite] = key
        return [newest[suite][2] for suite in sorted(newest)]

    def votes(self, roles: frozenset[str] | None) -> Votes:
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
        return Votes(
            approvers=sorted(approvers),
            request_ids=sorted(request_ids),
            rejections=[(at.isoformat(), actor, rid) for at, actor, rid in rejections],
        )

    def context(self) -> dict[str, Any]:
        """The CEL variables (see `domain.gate.rules`), built on first use."""
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
        pass_rate, coverage = pass_rate_of(tests), coverage_of(tests)
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
    expires = utc_time(request.expires_at)
    return expires if expires > now else None


def _latest_decisions(
    request: ApprovalFact, now: datetime
) -> dict[str, tuple[datetime, str, tuple[str, ...]]]:
    """Each actor's latest decision made by `now` (a reject wins a tie)."""
    latest: dict[str, tuple[datetime, str, tuple[str, ...]]] = {}
    for d in request.decisions:
        at = utc_time(d.at)
        if at > now:
            continue
        current = latest.get(d.actor)
        # "reject" > "approve": on equal times the rejection stands.
        if current is None or (at, d.decision) > current[:2]:
            latest[d.actor] = (at, d.decision, d.roles)
    return latest


def pass_rate_of(tests: Sequence[TestFact]) -> float | None:
    passed = sum(t.passed for t in tests)
    ran = passed + sum(t.failed for t in tests)
    return passed / ran if ran else None


def coverage_of(tests: Sequence[TestFact]) -> float | None:
    reported = [t.coverage for t in tests if t.coverage is not None]
    return min(reported) if reported else None
