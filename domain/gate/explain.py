"""A decision told to people: counts, a readable account, and the words rules use."""

from __future__ import annotations

from typing import Any

import msgspec

from domain.gate.inputs import Decision, RuleResult


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
        lines.append(f"      observed {show(rule.observed)}, threshold {show(rule.threshold)}")
    elif rule.observed is not None:
        lines.append(f"      observed {show(rule.observed)}")
    if rule.hint:
        lines.append(f"      hint: {rule.hint}")
    return lines


def show(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return repr(value)


def percent(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2%}"


def severity_label(severity: str) -> str:
    return "critical" if severity == "critical" else f"{severity}-or-worse"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
