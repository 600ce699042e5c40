"""Gate evaluation: every rule kind, exceptions, separation of duties, result and determinism."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from contracts import policy as p
from domain.gate import EXPRESSION_VARIABLES, Source, evaluate, explain, is_secret, summary
from domain.gate import inputs as gi

NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)  # a Wednesday
COMMIT = "c0ffee" + "0" * 34
DIGEST = "sha256:version"


def at(**delta: float) -> str:
    return (NOW + timedelta(**delta)).isoformat()


def finding(
    id: str,
    severity: str = "high",
    *,
    status: str = "open",
    tool: str = "semgrep",
    sources: tuple[str, ...] | None = None,
    rule_id: str = "python.injection",
    cwe: tuple[str, ...] = (),
    sla_due: str | None = None,
) -> gi.FindingFact:
    return gi.FindingFact(
        id=id,
        severity=severity,
        status=status,
        tool=tool,
        sources=(tool,) if sources is None else sources,
        rule_id=rule_id,
        cwe=cwe,
        path="src/app.py",
        sla_due=sla_due,
    )


def exception(id: str, **fields: Any) -> gi.ExceptionFact:
    fields.setdefault("environment", None)
    fields.setdefault("expires_at", at(days=30))
    return gi.ExceptionFact(id=id, approved_by="risk-owner", **fields)


def scan(id: str, tool: str = "trivy", **fields: Any) -> gi.ScanFact:
    fields.setdefault("format", "sarif")
    fields.setdefault("full", True)
    fields.setdefault("commit", COMMIT)
    fields.setdefault("submitted_at", at(hours=-1))
    return gi.ScanFact(id=id, tool=tool, **fields)


def suite_result(id: str, suite: str = "unit", **fields: Any) -> gi.TestFact:
    fields.setdefault("passed", 100)
    fields.setdefault("failed", 0)
    fields.setdefault("skipped", 0)
    fields.setdefault("coverage", 0.9)
    fields.setdefault("submitted_at", at(hours=-1))
    return gi.TestFact(id=id, suite=suite, **fields)


def vote(
    actor: str,
    decision: str = "approve",
    *,
    roles: tuple[str, ...] = ("approver",),
    when: str | None = None,
) -> gi.ApprovalDecisionFact:
    return gi.ApprovalDecisionFact(
        actor=actor,
        roles=roles,
        decision=decision,  # type: ignore[arg-type]
        at=when or at(hours=-1),
    )


def request(id: str, *votes: gi.ApprovalDecisionFact, **fields: Any) -> gi.ApprovalFact:
    fields.setdefault("status", "pending")
    fields.setdefault("version_digest", DIGEST)
    fields.setdefault("requested_by", "dev")
    fields.setdefault("expires_at", at(hours=24))
    return gi.ApprovalFact(id=id, decisions=votes, **fields)


def make_inputs(**fields: Any) -> gi.GateInputs:
    defaults: dict[str, Any] = {
        "project_id": "proj-1",
        "environment": "prod",
        "from_environment": "staging",
        "version": "1.4.0",
        "commit": COMMIT,
        "version_digest": DIGEST,
        "requested_by": "dev",
        "author": "author",
        "profile": p.Profile(),
        "now": NOW.isoformat(),
    }
    return gi.GateInputs(**(defaults | fields))


def decide(*rules: p.AnyRule, **fields: Any) -> gi.Decision:
    source: Source = "project"
    return evaluate([(source, rule) for rule in rules], make_inputs(**fields))


def judge(rule: p.AnyRule, **fields: Any) -> gi.RuleResult:
    return decide(rule, **fields).rules[0]


HIGH = p.MaxFindings(id="no-high", severity="high", max=0)


# --- when ---------------------------------------------------------------------------------------


def test_rule_is_not_applicable_when_profile_does_not_match() -> None:
    rule = p.MaxFindings(id="internet", severity="high", max=0, when=p.When(internet_facing=True))
    result = judge(rule, findings=(finding("f1"),))
    assert result.status == "not_applicable"
    assert result.hint == ""


def test_rule_applies_when_every_given_when_field_matches() -> None:
    rule = p.MaxFindings(
        id="crit",
        severity="high",
        max=0,
        when=p.When(criticality=["high", "critical"], owner_team=["payments"]),
    )
    profile = p.Profile(criticality="critical", owner_team="payments")
    assert judge(rule, findings=(finding("f1"),), profile=profile).status == "failed"
    no_team = p.Profile(criticality="critical")
    assert judge(rule, findings=(finding("f1"),), profile=no_team).status == "not_applicable"


# --- max_findings -------------------------------------------------------------------------------


def test_max_findings_passes_when_count_is_at_most_max() -> None:
    rule = p.MaxFindings(id="few-high", severity="high", max=2)
    result = judge(rule, findings=(finding("f1"), finding("f2"), finding("f3", "medium")))
    assert (result.status, result.observed, result.threshold) == ("passed", 2, 2)


def test_max_findings_fails_with_ids_and_hint_when_above_max() -> None:
    findings = (finding("f3", "critical"), finding("f1"), finding("f2", "low"))
    result = judge(HIGH, findings=findings)
    assert result.status == "failed"
    assert (result.observed, result.threshold) == (2, 0)
    assert result.finding_ids == ["f1", "f3"]
    assert result.finding_count == 2
    assert result.message == "2 open high-or-worse findings (max 0)"
    assert result.hint == "fix or except 2 more high-or-worse findings"


def test_max_findings_counts_open_and_reopened_only() -> None:
    findings = (
        finding("f1", status="reopened"),
        finding("f2", status="fixed"),
        finding("f3", status="false_positive"),
        finding("f4", status="accepted_risk"),
        finding("f5", status="not_affected"),
    )
    assert judge(HIGH, findings=findings).finding_ids == ["f1"]


def test_max_findings_overdue_only_counts_findings_due_by_now() -> None:
    rule = p.MaxFindings(id="sla", severity="medium", max=0, overdue_only=True)
    findings = (
        finding("due-past", "medium", sla_due=at(days=-1)),
        finding("due-now", "high", sla_due=at()),
        finding("due-later", "critical", sla_due=at(seconds=1)),
        finding("no-sla", "critical"),
        finding("low-past", "low", sla_due=at(days=-3)),
    )
    result = judge(rule, findings=findings)
    assert result.finding_ids == ["due-now", "due-past"]
    assert "SLA-overdue" in result.message


def test_max_findings_overdue_compares_times_in_any_spelling() -> None:
    rule = p.MaxFindings(id="sla", severity="info", max=0, overdue_only=True)
    findings = (
        finding("zulu", sla_due="2024-06-12T11:59:59Z"),
        finding("offset", sla_due="2024-06-12T13:30:00+02:00"),  # 11:30 UTC
        finding("fraction", sla_due="2024-06-12T12:00:00.000001+00:00"),
        finding("naive", sla_due="2024-06-12T12:00:01"),
    )
    assert judge(rule, findings=findings).finding_ids == ["offset", "zulu"]


def test_max_findings_lists_at_most_100_ids_but_counts_all() -> None:
    findings = tuple(finding(f"f{i:04d}") for i in range(250))
    result = judge(HIGH, findings=findings)
    assert result.finding_count == result.observed == 250
    assert result.finding_ids == [f"f{i:04d}" for i in range(100)]


def test_unknown_severity_counts_as_info() -> None:
    any_severity = p.MaxFindings(id="any", severity="info", max=0)
    assert judge(any_severity, findings=(finding("f1", "unknown"),)).observed == 1
    assert judge(p.MaxFindings(id="low", severity="low", max=0),
                 findings=(finding("f1", "unknown"),)).observed == 0  # fmt: skip


# --- exceptions ---------------------------------------------------------------------------------


def test_exception_by_finding_id_excepts_that_finding() -> None:
    result = judge(
        HIGH,
        findings=(finding("f1"), finding("f2")),
        exceptions=(exception("e1", finding_ids=("f1",)),),
    )
    assert result.finding_ids == ["f2"]
    assert result.exception_ids == ["e1"]
    assert "1 finding excepted by 1 exception" in result.message


def test_exception_by_rule_id_excepts_findings_of_that_rule() -> None:
    findings = (
        finding("f1", rule_id="weak-hash"),
        finding("f2", rule_id="weak-hash"),
        finding("f3", rule_id="sqli"),
    )
    result = judge(HIGH, findings=findings, exceptions=(exception("e1", rule_id="weak-hash"),))
    assert result.finding_ids == ["f3"]
    assert "2 findings excepted by 1 exception" in result.message


def test_exception_by_cwe_excepts_findings_with_that_cwe() -> None:
    findings = (finding("f1", cwe=("CWE-79", "CWE-80")), finding("f2", cwe=("CWE-89",)))
    result = judge(HIGH, findings=findings, exceptions=(exception("e1", cwe="cwe-80"),))
    assert result.finding_ids == ["f2"]


def test_exceptions_message_counts_findings_and_exceptions() -> None:
    findings = (
        finding("f1", rule_id="r-a"),
        finding("f2", rule_id="r-a", cwe=("CWE-79",)),
        finding("f3", cwe=("CWE-79",)),
    )
    exceptions = (exception("e1", rule_id="r-a"), exception("e2", cwe="CWE-79"))
    result = judge(HIGH, findings=findings, exceptions=exceptions)
    assert result.status == "passed"
    assert result.exception_ids == ["e1", "e2"]
    assert result.message.endswith("3 findings excepted by 2 exceptions")


def test_exception_covers_only_its_environment() -> None:
    findings = (finding("f1"), finding("f2"))
    exceptions = (
        exception("e-staging", finding_ids=("f1",), environment="staging"),
        exception("e-prod", finding_ids=("f2",), environment="prod"),
    )
    result = judge(HIGH, findings=findings, exceptions=exceptions)
    assert result.finding_ids == ["f1"]
    assert result.exception_ids == ["e-prod"]


def test_exception_does_not_cover_once_expired() -> None:
    exceptions = (
        exception("e-now", finding_ids=("f1",), expires_at=at()),
        exception("e-past", finding_ids=("f1",), expires_at=at(days=-1)),
    )
    result = judge(HIGH, findings=(finding("f1"),), exceptions=exceptions)
    assert (result.status, result.exception_ids) == ("failed", [])


def test_rule_lists_only_exceptions_covering_findings_it_looked_at() -> None:
    findings = (finding("f-low", "low"), finding("f-high"))
    exceptions = (
        exception("e-low", finding_ids=("f-low",)),
        exception("e-high", finding_ids=("f-high",)),
        exception("e-unused", rule_id="nothing-matches"),
    )
    result = judge(HIGH, findings=findings, exceptions=exceptions)
    assert result.exception_ids == ["e-high"]


# --- required_scans -----------------------------------------------------------------------------


def test_required_scans_passes_with_fresh_full_scans_of_the_commit() -> None:
    rule = p.RequiredScans(id="scans", scanners=["trivy", "Semgrep"])
    scans = (
        scan("s-old", "trivy", submitted_at=at(hours=-5)),
        scan("s-new", "trivy", submitted_at=at(hours=-2)),
        scan("s-sg", "semgrep", submitted_at=at(hours=-3)),
    )
    result = judge(rule, scans=scans)
    assert result.status == "passed"
    assert result.observed == {"trivy": 2.0, "Semgrep": 3.0}
    assert result.scan_ids == ["s-new", "s-sg"]


def test_required_scans_fails_listing_missing_and_stale_scanners() -> None:
    rule = p.RequiredScans(id="scans", scanners=["trivy", "semgrep", "gitleaks"], max_age_hours=24)
    scans = (
        scan("s-stale", "trivy", submitted_at=at(hours=-30)),
        scan("s-other", "semgrep", commit="deadbeef"),
        scan("s-ok", "gitleaks"),
    )
    result = judge(rule, scans=scans)
    assert result.status == "failed"
    assert result.observed == {"trivy": 30.0, "semgrep": None, "gitleaks": 1.0}
    assert "missing semgrep" in result.message
    assert "stale trivy" in result.message
    assert result.scan_ids == ["s-ok"]
    assert "semgrep" in result.hint and "trivy" in result.hint


def test_required_scans_needs_a_full_scan_unless_told_otherwise() -> None:
    scans = (scan("s-inc", "trivy", full=False),)
    full = p.RequiredScans(id="full", scanners=["trivy"])
    assert judge(full, scans=scans).status == "failed"
    incremental = p.RequiredScans(id="any", scanners=["trivy"], full=False)
    assert judge(incremental, scans=scans).status == "passed"


# --- no_secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fact",
    [
        finding("by-tool", tool="gitleaks"),
        finding("by-tool-case", tool="TruffleHog", sources=()),
        finding("by-source", tool="sarif", sources=("sarif", "detect-secrets")),
        finding("by-cwe", cwe=("CWE-798",)),
        finding("by-rule", rule_id="generic.AWS-Secret-Key"),
    ],
    ids=lambda fact: fact.id,
)
def test_is_secret_recognises_secret_tools_cwes_and_rules(fact: gi.FindingFact) -> None:
    assert is_secret(fact)


def test_is_secret_is_false_for_other_findings() -> None:
    assert not is_secret(finding("sqli", tool="semgrep", cwe=("CWE-89",), rule_id="sqli"))


def test_no_secrets_fails_on_an_open_secret_finding() -> None:
    findings = (
        finding("s1", tool="gitleaks"),
        finding("s2", tool="gitleaks", status="fixed"),
        finding("x1"),
    )
    result = judge(p.NoSecrets(id="secrets"), findings=findings)
    assert (result.status, result.finding_ids, result.observed) == ("failed", ["s1"], 1)
    assert result.hint


def test_no_secrets_passes_when_secrets_are_excepted() -> None:
    result = judge(
        p.NoSecrets(id="secrets"),
        findings=(finding("s1", tool="gitleaks"), finding("x1")),
        exceptions=(exception("e1", finding_ids=("s1", "x1")),),
    )
    assert result.status == "passed"
    assert result.exception_ids == ["e1"]
    assert "1 finding excepted by 1 exception" in result.message


# --- tests --------------------------------------------------------------------------------------


def test_tests_pass_when_pass_rate_and_coverage_reach_thresholds() -> None:
    rule = p.Tests(id="tests", min_pass_rate=0.95, min_coverage=0.8)
    facts = (
        suite_result("t1", "unit", passed=95, failed=5, coverage=0.85),
        suite_result("t2", "integration", passed=100, failed=0, coverage=0.8),
    )
    result = judge(rule, tests=facts)
    assert result.status == "passed"
    assert result.observed == {"pass_rate": 0.975, "coverage": 0.8}
    assert result.test_ids == ["t1", "t2"]


def test_tests_fail_when_pass_rate_is_below_minimum() -> None:
    rule = p.Tests(id="tests", min_pass_rate=0.99)
    result = judge(rule, tests=(suite_result("t1", passed=90, failed=10),))
    assert result.status == "failed"
    assert "pass rate 90.00% < 99.00%" in result.message


def test_tests_fail_when_coverage_is_below_minimum_or_unreported() -> None:
    rule = p.Tests(id="tests", min_coverage=0.8)
    low = (suite_result("t1", coverage=0.9), suite_result("t2", "e2e", coverage=0.5))
    result = judge(rule, tests=low)
    assert "coverage 50.00% < 80.00%" in result.message
    assert result.hint == "raise coverage to at least 80.00%"
    unreported = (suite_result("t1", coverage=None),)
    assert judge(rule, tests=unreported).message == "no coverage reported"


def test_tests_fail_when_there_are_no_results() -> None:
    result = judge(p.Tests(id="tests"))
    assert (result.status, result.message) == ("failed", "no test results")


def test_tests_use_the_newest_result_per_suite() -> None:
    rule = p.Tests(id="tests", min_pass_rate=1.0)
    facts = (
        suite_result("t-old", passed=1, failed=9, submitted_at=at(hours=-5)),
        suite_result("t-new", passed=10, failed=0, submitted_at=at(hours=-1)),
    )
    result = judge(rule, tests=facts)
    assert (result.status, result.test_ids) == ("passed", ["t-new"])


def test_tests_filter_by_suites_and_age() -> None:
    rule = p.Tests(id="tests", min_pass_rate=1.0, suites=["unit"], max_age_hours=2)
    facts = (
        suite_result("t-unit-old", "unit", passed=1, failed=1, submitted_at=at(hours=-3)),
        suite_result("t-unit", "unit", submitted_at=at(hours=-1)),
        suite_result("t-e2e", "e2e", passed=0, failed=5),
    )
    assert judge(rule, tests=facts).test_ids == ["t-unit"]
    too_old = p.Tests(id="tests", max_age_hours=0.5)
    assert judge(too_old, tests=facts).message == "no test results within 0.5h"


def test_tests_fail_when_a_named_suite_has_no_results() -> None:
    rule = p.Tests(id="tests", suites=["unit", "e2e"])
    result = judge(rule, tests=(suite_result("t1", "unit"),))
    assert result.status == "failed"
    assert "no results for suite e2e" in result.message


def test_tests_fail_a_pass_rate_when_every_test_was_skipped() -> None:
    rule = p.Tests(id="tests", min_pass_rate=0.5)
    result = judge(rule, tests=(suite_result("t1", passed=0, failed=0, skipped=10),))
    assert result.status == "failed"
    assert result.observed["pass_rate"] is None


# --- approvals ----------------------------------------------------------------------------------


APPROVE_ONE = p.Approvals(id="approval")
APPROVE_TWO = p.Approvals(id="two", count=2, roles=["approver", "admin"])


def test_approvals_pass_with_an_eligible_approver() -> None:
    result = judge(APPROVE_ONE, approvals=(request("a1", vote("boss")),))
    assert (result.status, result.observed, result.threshold) == ("passed", 1, 1)
    assert result.approval_ids == ["a1"]


@pytest.mark.parametrize("actor", ["dev", "author", "asker"])
def test_requester_and_author_never_count_as_approvers(actor: str) -> None:
    approvals = (request("a1", vote(actor), requested_by="asker"),)
    result = judge(APPROVE_ONE, approvals=approvals)
    assert (result.status, result.observed, result.approval_ids) == ("failed", 0, [])


def test_same_actor_counts_once_across_requests() -> None:
    approvals = (request("a1", vote("boss")), request("a2", vote("boss", roles=("admin",))))
    result = judge(APPROVE_TWO, approvals=approvals)
    assert (result.status, result.observed) == ("failed", 1)
    assert result.hint.startswith("needs 1 more approval")


def test_two_distinct_approvers_across_requests_pass_a_count_of_two() -> None:
    approvals = (request("a1", vote("boss")), request("a2", vote("cto", roles=("admin",))))
    result = judge(APPROVE_TWO, approvals=approvals)
    assert (result.status, result.observed) == ("passed", 2)
    assert result.approval_ids == ["a1", "a2"]
    assert "boss, cto" in result.message


def test_approver_without_a_required_role_does_not_count() -> None:
    approvals = (request("a1", vote("ops", roles=("operator", "viewer"))),)
    assert judge(APPROVE_ONE, approvals=approvals).observed == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"expires_at": at(hours=-1)},
        {"expires_at": at()},
        {"status": "voided"},
        {"status": "expired"},
        {"version_digest": "sha256:another-version"},
    ],
    ids=["expired", "expiring-now", "voided", "status-expired", "other-version"],
)
def test_approval_on_a_dead_or_other_request_does_not_count(fields: dict[str, Any]) -> None:
    approvals = (request("a1", vote("boss", when=at(hours=-2)), **fields),)
    assert judge(APPROVE_ONE, approvals=approvals).observed == 0


def test_approval_decided_after_the_request_expired_or_after_now_does_not_count() -> None:
    late = request("a1", vote("boss", when=at(hours=-1)), expires_at=at(hours=-2))
    future = request("a2", vote("boss", when=at(hours=1)))
    assert judge(APPROVE_ONE, approvals=(late, future)).observed == 0


def test_rejection_fails_the_rule_and_names_it() -> None:
    approvals = (request("a1", vote("boss"), vote("sec", "reject", when=at(minutes=-5))),)
    decision = decide(APPROVE_ONE, approvals=approvals)
    result = decision.rules[0]
    assert result.status == "failed"
    assert result.message.startswith("rejected by sec on request a1")
    assert result.approval_ids == ["a1"]
    assert decision.result == "failed"


def test_rejection_on_a_rejected_request_still_stands() -> None:
    approvals = (
        request("a1", vote("sec", "reject"), status="rejected"),
        request("a2", vote("boss")),
    )
    assert decide(APPROVE_ONE, approvals=approvals).result == "failed"


def test_rejection_of_another_version_is_ignored() -> None:
    approvals = (
        request("a1", vote("sec", "reject"), version_digest="sha256:old"),
        request("a2", vote("boss")),
    )
    assert decide(APPROVE_ONE, approvals=approvals).result == "passed"


def test_rejection_by_an_ineligible_actor_is_ignored() -> None:
    approvals = (request("a1", vote("boss"), vote("dev", "reject"), vote("x", "reject", roles=())),)
    assert decide(APPROVE_ONE, approvals=approvals).result == "passed"


def test_an_actors_latest_decision_counts() -> None:
    changed_mind = request(
        "a1", vote("boss", when=at(hours=-2)), vote("boss", "reject", when=at(hours=-1))
    )
    assert decide(APPROVE_ONE, approvals=(changed_mind,)).result == "failed"


# --- sbom ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["cyclonedx", "spdx", "CycloneDX"])
def test_sbom_passes_with_an_sbom_of_the_commit(fmt: str) -> None:
    result = judge(p.Sbom(id="sbom"), scans=(scan("s1", "syft", format=fmt),))
    assert (result.status, result.scan_ids) == ("passed", ["s1"])


def test_sbom_fails_without_an_sbom_of_the_commit() -> None:
    scans = (scan("s1", "syft", format="cyclonedx", commit="other"), scan("s2", "trivy"))
    result = judge(p.Sbom(id="sbom"), scans=scans)
    assert (result.status, result.scan_ids) == ("failed", [])
    assert "SBOM" in result.hint


# --- soak ---------------------------------------------------------------------------------------


SOAK = p.Soak(id="soak", hours=24)


def live(hours_ago: float | None, *, failed: bool = False) -> gi.PreviousEnvironment:
    since = None if hours_ago is None else at(hours=-hours_ago)
    return gi.PreviousEnvironment(name="staging", live_since=since, failed=failed)


def test_soak_is_not_applicable_in_the_first_environment() -> None:
    assert judge(SOAK, from_environment=None).status == "not_applicable"


def test_soak_passes_after_enough_hours_live() -> None:
    result = judge(SOAK, previous=live(24))
    assert (result.status, result.observed, result.threshold) == ("passed", 24.0, 24)


def test_soak_fails_before_enough_hours_with_rounded_hours() -> None:
    result = judge(SOAK, previous=live(10 + 1 / 3))
    assert (result.status, result.observed) == ("failed", 10.33)
    assert "13.67h more" in result.hint


@pytest.mark.parametrize(
    "previous", [None, live(None), live(48, failed=True)], ids=["none", "not-live", "failed"]
)
def test_soak_fails_when_not_live_or_failed(previous: gi.PreviousEnvironment | None) -> None:
    assert judge(SOAK, previous=previous).status == "failed"


# --- freeze -------------------------------------------------------------------------------------


def freeze(*windows: p.Window) -> p.Freeze:
    return p.Freeze(id="freeze", windows=list(windows))


def test_freeze_fails_inside_an_absolute_window_naming_reason_and_end() -> None:
    window = p.Window(start=NOW - timedelta(days=1), end=NOW + timedelta(days=2), reason="launch")
    result = judge(freeze(window))
    assert result.status == "failed"
    assert "launch" in result.message
    assert "until 2024-06-14T12:00:00+00:00" in result.message


def test_freeze_absolute_window_is_half_open() -> None:
    ended = p.Window(start=NOW - timedelta(days=1), end=NOW, reason="over")
    starts = p.Window(start=NOW, end=NOW + timedelta(hours=1), reason="starting")
    result = judge(freeze(ended, starts))
    assert result.observed == ["starting"]


def test_freeze_accepts_naive_window_times_as_utc() -> None:
    window = p.Window(start=datetime(2024, 6, 12, 11), end=datetime(2024, 6, 12, 13))
    assert judge(freeze(window)).status == "failed"


@pytest.mark.parametrize(
    ("now", "frozen"),
    [
        ("2024-06-12T09:00:00+00:00", True),  # Wednesday 09:00
        ("2024-06-12T08:59:59+00:00", False),
        ("2024-06-12T17:00:00+00:00", False),  # `to` is exclusive
        ("2024-06-13T10:00:00+00:00", False),  # Thursday
    ],
)
def test_freeze_weekly_window_by_day_and_clock(now: str, frozen: bool) -> None:
    window = p.Window(days=["mon", "wed"], from_="09:00", to="17:00", reason="office hours")
    result = judge(freeze(window), now=now)
    assert (result.status == "failed") is frozen


@pytest.mark.parametrize(
    ("now", "frozen"),
    [
        ("2024-06-14T21:59:00+00:00", False),  # Friday before
        ("2024-06-14T22:00:00+00:00", True),  # Friday from
        ("2024-06-15T05:59:00+00:00", True),  # Saturday morning, carried over
        ("2024-06-15T06:00:00+00:00", False),
        ("2024-06-13T23:00:00+00:00", False),  # Thursday night: Thursday not listed
    ],
)
def test_freeze_weekly_window_wraps_midnight(now: str, frozen: bool) -> None:
    window = p.Window(days=["fri"], from_="22:00", to="06:00", reason="night")
    assert (judge(freeze(window), now=now).status == "failed") is frozen


def test_freeze_reports_the_end_of_back_to_back_windows() -> None:
    weekend = p.Window(days=["sat", "sun"], reason="weekend")
    friday_night = p.Window(days=["fri"], from_="18:00", to="00:00", reason="friday night")
    result = judge(freeze(weekend, friday_night), now="2024-06-14T19:00:00+00:00")
    assert result.observed == ["friday night"]
    assert "until 2024-06-17T00:00:00+00:00" in result.message


def test_freeze_without_end_is_until_further_notice() -> None:
    result = judge(freeze(p.Window(start=NOW - timedelta(days=1), reason="incident")))
    assert result.message == "frozen: incident (until further notice)"


def test_freeze_passes_outside_every_window() -> None:
    window = p.Window(days=["sat", "sun"])
    result = judge(freeze(window))
    assert (result.status, result.hint) == ("passed", "")


# --- expression ---------------------------------------------------------------------------------


def expression(expr: str, message: str | None = None) -> p.Expression:
    return p.Expression(id="expr", expr=expr, message=message)


def test_expression_passes_when_true() -> None:
    rule = expression("findings.high == 0 && environment == 'prod' && version == '1.4.0'")
    assert judge(rule).status == "passed"


def test_expression_fails_with_its_message_when_false() -> None:
    rule = expression("findings.high == 0", message="no high findings in prod")
    result = judge(rule, findings=(finding("f1"),))
    assert (result.status, result.message) == ("failed", "no high findings in prod")


@pytest.mark.parametrize("expr", ["nope.count > 0", "findings.high +", "1 / 0 == 1"])
def test_expression_error_fails_with_the_error_text(expr: str) -> None:
    result = judge(expression(expr))
    assert result.status == "failed"
    assert result.message.startswith("expression error: ")


@pytest.mark.parametrize("expr", ["1", "'true'", "findings"])
def test_expression_that_is_not_a_bool_fails(expr: str) -> None:
    result = judge(expression(expr))
    assert result.status == "failed"
    assert "not a bool" in result.message


def test_expression_sees_the_documented_context() -> None:
    findings = (
        finding("c1", "critical", sla_due=at(days=-1)),
        finding("h1"),
        finding("h2", rule_id="excepted"),
        finding("s1", "medium", tool="gitleaks"),
        finding("i1", "info"),
    )
    checks = [
        "findings.critical == 1 && findings.high == 1 && findings.medium == 1",
        "findings.low == 0 && findings.info == 1 && findings.overdue == 1",
        "findings.secrets == 1 && findings.total == 4",
        "profile.criticality == 'high' && profile.internet_facing && profile.owner_team == ''",
        "profile.data_classification == 'internal'",
        "scans == ['semgrep', 'trivy']",
        "tests.pass_rate == 0.5 && tests.coverage == -1.0",
        "approvals == 1",
    ]
    rules = [p.Expression(id=f"e{i}", expr=expr) for i, expr in enumerate(checks)]
    decision = decide(
        *rules,
        profile=p.Profile(criticality="high", internet_facing=True),
        findings=findings,
        exceptions=(exception("e1", rule_id="excepted"),),
        scans=(scan("s1", "Trivy"), scan("s2", "semgrep"), scan("s3", "bandit", commit="x")),
        tests=(suite_result("t1", passed=1, failed=1, coverage=None),),
        approvals=(request("a1", vote("ops", roles=("operator",))),),
    )
    assert [(r.rule_id, r.status, r.message) for r in decision.rules if r.status != "passed"] == []


def test_expression_variables_name_the_context() -> None:
    names = set(EXPRESSION_VARIABLES)
    assert names == {"findings", "profile", "environment", "version", "scans", "tests", "approvals"}
    rule = expression(
        "size(findings) == 8 && size(profile) == 4 && environment == 'prod'"
        " && version == '1.4.0' && scans == [] && size(tests) == 2 && approvals == 0"
    )
    assert judge(rule).status == "passed"


# --- overall result -----------------------------------------------------------------------------


def test_decision_passes_when_every_applicable_rule_passes() -> None:
    na = p.MaxFindings(id="na", severity="info", max=0, when=p.When(internet_facing=True))
    decision = decide(HIGH, na, findings=(finding("f1", "low"),))
    assert decision.result == "passed"


def test_decision_awaits_approval_when_only_approvals_are_missing() -> None:
    decision = decide(HIGH, APPROVE_ONE)
    assert decision.result == "awaiting_approval"


def test_decision_fails_when_any_other_rule_fails_even_if_approvals_are_missing() -> None:
    decision = decide(APPROVE_ONE, HIGH, findings=(finding("f1"),))
    assert decision.result == "failed"


def test_decision_records_sources_order_digest_and_time() -> None:
    inputs = make_inputs(findings=(finding("f1", "low"),))
    decision = evaluate([("baseline", HIGH), ("project", p.Sbom(id="sbom"))], inputs)
    assert [(r.rule_id, r.source, r.kind) for r in decision.rules] == [
        ("no-high", "baseline", "max_findings"),
        ("sbom", "project", "sbom"),
    ]
    assert decision.inputs_digest == inputs.digest()
    assert decision.evaluated_at == inputs.now


# --- determinism --------------------------------------------------------------------------------


def rich_inputs(order: random.Random | None = None) -> gi.GateInputs:
    findings = [finding(f"f{i}", ("critical", "high", "low")[i % 3]) for i in range(30)]
    findings += [finding("s1", tool="gitleaks"), finding("c1", cwe=("CWE-79",))]
    exceptions = [
        exception("e1", finding_ids=("f1", "f4")),
        exception("e2", rule_id="python.injection", environment="staging"),
        exception("e3", cwe="CWE-79"),
    ]
    scans = [scan("s-a", "trivy"), scan("s-b", "trivy"), scan("s-c", "semgrep")]
    tests = [suite_result("t1"), suite_result("t2", "e2e", coverage=0.7)]
    approvals = [request("a2", vote("cto", roles=("admin",))), request("a1", vote("boss"))]
    if order is not None:
        for items in (findings, exceptions, scans, tests, approvals):
            order.shuffle(items)
    return make_inputs(
        findings=tuple(findings),
        exceptions=tuple(exceptions),
        scans=tuple(scans),
        tests=tuple(tests),
        approvals=tuple(approvals),
        previous=live(30),
    )


RICH_RULES: list[tuple[Source, p.AnyRule]] = [
    ("baseline", HIGH),
    ("baseline", p.NoSecrets(id="secrets")),
    ("baseline", p.RequiredScans(id="scans", scanners=["trivy", "semgrep"])),
    ("project", p.Tests(id="tests", min_coverage=0.8)),
    ("project", APPROVE_TWO),
    ("project", SOAK),
    ("project", expression("findings.total < 10")),
]


def test_same_inputs_in_any_order_give_the_same_digest_and_decision() -> None:
    reference = evaluate(RICH_RULES, rich_inputs())
    for seed in range(5):
        shuffled = rich_inputs(random.Random(seed))
        decision = evaluate(RICH_RULES, shuffled)
        assert shuffled.digest() == reference.inputs_digest
        assert msgspec.json.encode(decision) == msgspec.json.encode(reference)


def test_digest_changes_when_a_fact_changes() -> None:
    inputs = rich_inputs()
    changed = msgspec.structs.replace(inputs, findings=(*inputs.findings, finding("new")))
    assert changed.digest() != inputs.digest()


# --- explain and summary ------------------------------------------------------------------------


def test_explain_lists_failed_rules_first_with_observed_threshold_and_hint() -> None:
    na = p.Sbom(id="sbom-na", when=p.When(internet_facing=True))
    decision = decide(p.NoSecrets(id="secrets"), na, HIGH, findings=(finding("f1"),))
    text = explain(decision)
    assert text.startswith("Gate FAILED")
    assert decision.inputs_digest in text
    failed_at, passed_at, na_at = (text.index(t) for t in ("Failed:", "Passed:", "Not applicable:"))
    assert failed_at < passed_at < na_at
    assert text.index("no-high") < text.index("secrets") < text.index("sbom-na")
    assert "observed 1, threshold 0" in text
    assert "hint: fix or except 1 more high-or-worse finding" in text
    assert "1 open high-or-worse finding (max 0)" in text


def test_explain_says_awaiting_approval() -> None:
    assert explain(decide(APPROVE_ONE)).startswith("Gate AWAITING APPROVAL")


def test_summary_counts_rules_by_status() -> None:
    na = p.Sbom(id="sbom-na", when=p.When(internet_facing=True))
    decision = decide(p.Sbom(id="sbom"), na, HIGH)
    assert summary(decision) == {"passed": 1, "failed": 1, "not_applicable": 1}
