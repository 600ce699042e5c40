"""Open findings are tallied by kind while kinds repeat and one by one when they hardly do:
either way the decision is the same."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from contracts import policy as p
from domain import gate
from domain.gate import tally
from domain.gate.inputs import ExceptionFact, FindingFact, GateInputs

NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)
RULES: list[tuple[gate.Source, p.AnyRule]] = [
    ("baseline", p.MaxFindings(id="critical", severity="critical", max=0)),
    ("baseline", p.MaxFindings(id="high", severity="high", max=0)),
    ("baseline", p.MaxFindings(id="info", severity="info", max=0)),
    ("project", p.MaxFindings(id="overdue", severity="low", max=0, overdue_only=True)),
    ("project", p.NoSecrets(id="secrets")),
    ("project", p.Expression(id="counts", expr="findings.total == 0")),
]


def _at(hours: float) -> str:
    return (NOW + timedelta(hours=hours)).isoformat()


def _inputs(rng: random.Random, findings: int, kinds: int) -> GateInputs:
    """`findings` findings drawn from `kinds` combinations of what a tally looks at."""
    combos = [
        (
            rng.choice(("critical", "high", "medium", "low", "info", "unknown")),
            rng.choice((None, _at(-rng.randrange(1, 500)), _at(rng.randrange(1, 500)))),
            f"rule-{rng.randrange(40)}" + rng.choice(("", "", "-secret")),
            rng.choice(("semgrep", "Gitleaks", "trivy")),
            tuple(f"CWE-{rng.choice((79, 89, 798, 20))}" for _ in range(rng.randrange(3))),
            rng.choice(((), ("semgrep",), ("trufflehog",))),
        )
        for _ in range(kinds)
    ]
    facts = []
    for i in range(findings):
        severity, due, rule, tool, cwe, sources = rng.choice(combos)
        status = rng.choice(("open", "open", "reopened", "fixed"))
        fact = FindingFact(f"f{i:05d}", severity, status, tool, sources, rule, cwe, None, due)
        facts.append(fact)
    exceptions = [
        ExceptionFact(
            id=f"e{i}",
            environment=rng.choice((None, "prod", "dev")),
            finding_ids=tuple(f"f{rng.randrange(findings):05d}" for _ in range(3)),
            rule_id=f"rule-{rng.randrange(40)}" if i % 3 == 1 else None,
            cwe=rng.choice(("cwe-89", "CWE-20")) if i % 3 == 2 else None,
            expires_at=_at(rng.choice((-1, 24))),
            approved_by="owner",
        )
        for i in range(30)
    ]
    return GateInputs(
        project_id="p",
        environment="prod",
        from_environment=None,
        version="1",
        commit="c",
        version_digest="d",
        requested_by="r",
        author=None,
        profile=p.Profile(),
        now=NOW.isoformat(),
        findings=tuple(facts),
        exceptions=tuple(exceptions),
    )


@pytest.mark.parametrize("kinds", [3, 200, 3000])
def test_tally_by_kind_and_one_by_one_decide_alike_when_kinds_vary(
    kinds: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = _inputs(random.Random(kinds), 4000, kinds)
    as_it_comes = gate.evaluate(RULES, inputs)
    monkeypatch.setattr(tally, "KINDS_AT_LEAST", 10**9)
    by_kind = gate.evaluate(RULES, inputs)
    monkeypatch.setattr(tally, "KINDS_AT_LEAST", 0)
    one_by_one = gate.evaluate(RULES, inputs)

    assert by_kind == one_by_one == as_it_comes
    assert any(rule.exception_ids for rule in by_kind.rules)
    assert any(rule.finding_ids for rule in by_kind.rules)
