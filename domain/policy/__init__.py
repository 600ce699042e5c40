"""Gate policy documents: parse and validate, canonical form, tightening, diff.

* `domain.policy.parse`: YAML/JSON text to a `PolicyDocument`, reporting every error.
* `domain.policy.canonical`: the document as plain data and its digest.
* `domain.policy.tighten`: a project policy may only tighten its org baseline.
* `domain.policy.diff`: what changed between two versions.
"""

from domain.policy.canonical import policy_as_dict, policy_digest
from domain.policy.diff import diff_policies
from domain.policy.parse import (
    EXPRESSION_VARIABLES,
    MAX_NODES,
    MAX_POLICY_BYTES,
    PolicyError,
    PolicyInvalid,
    expression_problem,
    parse_policy,
)
from domain.policy.tighten import (
    SEVERITY_RANK,
    Source,
    effective_exception_max_days,
    effective_rules,
    tightening_errors,
)

__all__ = [
    "EXPRESSION_VARIABLES",
    "MAX_NODES",
    "MAX_POLICY_BYTES",
    "SEVERITY_RANK",
    "PolicyError",
    "PolicyInvalid",
    "Source",
    "diff_policies",
    "effective_exception_max_days",
    "effective_rules",
    "expression_problem",
    "parse_policy",
    "policy_as_dict",
    "policy_digest",
    "tightening_errors",
]
