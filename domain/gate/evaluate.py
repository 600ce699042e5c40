"""Gate evaluation: a policy's rules applied to `GateInputs`, giving a `Decision` (pure).

Result: `failed` when any rule other than `approvals` failed, or an approvals rule failed with
a rejection; `awaiting_approval` when only approvals are missing; otherwise `passed`.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts.policy import AnyRule, Profile, When
from domain.gate.inputs import Decision, GateInputs, Result, RuleResult, canonical_digest
from domain.gate.rules import Outcome, Source, check_rule
from domain.gate.tally import Facts


def evaluate(rules: Sequence[tuple[Source, AnyRule]], inputs: GateInputs) -> Decision:
    """Apply every rule, in policy order, to the inputs; decide passed / failed / awaiting."""
    canonical = inputs.canonical()
    facts = Facts(canonical)
    results: list[RuleResult] = []
    rejected = False
    for source, rule in rules:
        outcome = _outcome(rule, facts)
        rejected = rejected or outcome.rejected
        results.append(outcome.result(rule, source))
    return Decision(
        result=_overall(results, rejected),
        rules=results,
        inputs_digest=canonical_digest(canonical),
        evaluated_at=inputs.now,
    )


def _outcome(rule: AnyRule, facts: Facts) -> Outcome:
    if not applies(rule.when, facts.inputs.profile):
        return Outcome("not_applicable", message="the project's profile does not match `when`")
    return check_rule(rule, facts)


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


def _overall(results: Sequence[RuleResult], rejected: bool) -> Result:
    failed = [rule for rule in results if rule.status == "failed"]
    if rejected or any(rule.kind != "approvals" for rule in failed):
        return "failed"
    return "awaiting_approval" if failed else "passed"
