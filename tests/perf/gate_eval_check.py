"""Time of one gate evaluation of a large project: 10,000 open findings, 200 exceptions, 20 rules.

A benchmark, not a test (pytest does not collect it; it never fails on time). Prints p50 and
p99 of `evaluate` (which includes the inputs digest) for facts in random order and sorted by id
(as the collector builds them), and, apart, of the digest alone. Two sets of findings: every
one unlike the others (own SLA due time, rule and CWE drawn apart: the worst case for tallying
by kind), and as scanners report them (a CWE per rule, SLA due times shared by a scan).

    .venv/bin/python tests/perf/gate_eval_check.py [runs]
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import msgspec

from contracts import policy as p
from domain.gate import Source, evaluate
from domain.gate.inputs import (
    ApprovalDecisionFact,
    ApprovalFact,
    ExceptionFact,
    FindingFact,
    GateInputs,
    PreviousEnvironment,
    ScanFact,
    TestFact,
)

NOW = datetime(2024, 6, 14, 12, 0, tzinfo=UTC)
SEVERITIES = ("critical", "high", "medium", "low", "info")
TOOLS = ("semgrep", "trivy", "gitleaks", "bandit", "grype")


def iso(delta_hours: float) -> str:
    return (NOW + timedelta(hours=delta_hours)).isoformat()


def build_inputs(
    findings: int = 10_000, exceptions: int = 200, scanned: bool = False
) -> GateInputs:
    """`scanned`: findings as scanners report them, else every one unlike the others."""
    rng = random.Random(42)
    facts = [
        FindingFact(
            id=f"f-{i:06d}",
            severity=rng.choice(SEVERITIES),
            status="open",
            tool=rng.choice(TOOLS),
            sources=(),
            rule_id=f"rule-{rng.randrange(500)}",
            cwe=(f"CWE-{rng.randrange(1, 900)}",),
            path=f"src/module_{i % 300}.py",
            sla_due=iso(rng.uniform(-24 * 30, 24 * 30)),
        )
        for i in range(findings)
    ]
    if scanned:  # 100 rules, each with its tool, severity and CWE; found by one of 5 scans
        scans = [rng.uniform(-24 * 60, 0) for _ in range(5)]
        rules = [int(f.rule_id.removeprefix("rule-")) % 100 for f in facts]
        facts = [
            msgspec.structs.replace(
                f,
                severity=SEVERITIES[rule % 5],
                tool=TOOLS[rule % 5],
                rule_id=f"rule-{rule}",
                cwe=(f"CWE-{rule * 7 % 900}",),
                sla_due=iso(rng.choice(scans) + 24 * 7 * (1 + rule % 5)),
            )
            for f, rule in zip(facts, rules, strict=True)
        ]
    rng.shuffle(facts)
    excepts = []
    for i in range(exceptions):
        kind = i % 3
        excepts.append(
            ExceptionFact(
                id=f"e-{i:04d}",
                environment=rng.choice((None, "prod", "staging")),
                finding_ids=tuple(f"f-{rng.randrange(findings):06d}" for _ in range(5))
                if kind == 0
                else (),
                rule_id=f"rule-{rng.randrange(500)}" if kind == 1 else None,
                cwe=f"CWE-{rng.randrange(1, 900)}" if kind == 2 else None,
                expires_at=iso(rng.choice((-1, 24 * 30))),
                approved_by="risk-owner",
            )
        )
    return GateInputs(
        project_id="p-1",
        environment="prod",
        from_environment="staging",
        version="1.2.3",
        commit="a" * 40,
        version_digest="sha256:v",
        requested_by="dev",
        author="dev2",
        profile=p.Profile(criticality="high", internet_facing=True),
        now=NOW.isoformat(),
        findings=tuple(facts),
        exceptions=tuple(excepts),
        scans=tuple(
            ScanFact(
                id=f"s-{t}",
                tool=t,
                format="sarif" if t != "syft" else "cyclonedx",
                full=True,
                commit="a" * 40,
                submitted_at=iso(-2),
            )
            for t in (*TOOLS, "syft")
        ),
        tests=(
            TestFact(
                id="t-1",
                suite="unit",
                passed=990,
                failed=10,
                skipped=3,
                coverage=0.85,
                submitted_at=iso(-1),
            ),
        ),
        approvals=(
            ApprovalFact(
                id="a-1",
                status="pending",
                version_digest="sha256:v",
                requested_by="dev",
                expires_at=iso(48),
                decisions=(
                    ApprovalDecisionFact(
                        actor="boss", roles=("approver",), decision="approve", at=iso(-1)
                    ),
                ),
            ),
        ),
        previous=PreviousEnvironment(name="staging", live_since=iso(-50), failed=False),
    )


def build_rules() -> list[tuple[Source, p.AnyRule]]:
    rules: list[p.AnyRule] = [
        p.MaxFindings(id="crit", severity="critical", max=0),
        p.MaxFindings(id="high", severity="high", max=10),
        p.MaxFindings(id="medium", severity="medium", max=100),
        p.MaxFindings(id="low", severity="low", max=1000),
        p.MaxFindings(id="any", severity="info", max=5000),
        p.MaxFindings(id="crit-overdue", severity="critical", max=0, overdue_only=True),
        p.MaxFindings(id="high-overdue", severity="high", max=0, overdue_only=True),
        p.MaxFindings(id="med-overdue", severity="medium", max=0, overdue_only=True),
        p.RequiredScans(id="scans", scanners=["semgrep", "trivy", "gitleaks"]),
        p.RequiredScans(id="scans-any", scanners=["bandit"], full=False, max_age_hours=1),
        p.NoSecrets(id="secrets"),
        p.Tests(id="tests", min_pass_rate=0.95, min_coverage=0.8),
        p.Approvals(id="approvals", count=2),
        p.Sbom(id="sbom"),
        p.Soak(id="soak", hours=24),
        p.Freeze(
            id="freeze",
            windows=[
                p.Window(days=["sat", "sun"], reason="weekend"),
                p.Window(days=["fri"], from_="18:00", to="08:00", reason="friday night"),
            ],
        ),
        p.Expression(id="expr-1", expr="findings.critical == 0 && findings.secrets == 0"),
        p.Expression(id="expr-2", expr="tests.coverage >= 0.8 || !profile.internet_facing"),
        p.Expression(id="expr-3", expr="'trivy' in scans && approvals >= 1"),
        p.MaxFindings(
            id="team-only",
            severity="high",
            max=0,
            when=p.When(owner_team=["payments"]),
        ),
    ]
    baseline: Source = "baseline"
    project: Source = "project"
    return [(baseline if i < 10 else project, rule) for i, rule in enumerate(rules)]


def timings(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm up (CEL compile cache, imports)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{name:<28} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   ({len(ordered)} runs)")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rules = build_rules()
    for scanned in (False, True):
        inputs = build_inputs(scanned=scanned)
        decision = evaluate(rules, inputs)
        failed = [r.rule_id for r in decision.rules if r.status == "failed"]
        print(
            f"{len(inputs.findings)} findings "
            + ("as scanners report them" if scanned else "each unlike the others")
            + f", {len(inputs.exceptions)} exceptions, {len(rules)} rules"
        )
        print(f"result {decision.result}; failed: {', '.join(failed)}")
        report("evaluate, shuffled facts", timings(partial(evaluate, rules, inputs), runs))
        # The collector builds inputs sorted by id (canonical), which makes the sorting cheap.
        collected = inputs.canonical()
        report("evaluate, facts as collected", timings(partial(evaluate, rules, collected), runs))
        report("inputs.digest() alone", timings(inputs.digest, runs))


if __name__ == "__main__":
    main()
