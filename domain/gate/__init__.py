"""Gate evaluation: a policy's rules applied to `GateInputs`, giving a `Decision` (pure).

`evaluate` does no I/O and reads no clock (`inputs.now` is the time). It is deterministic: the
same inputs, in any order, give an identical `Decision` — it evaluates the canonical (sorted)
inputs, every id list in a result is sorted, and ties between facts are broken by id.

The package, by what each module holds:
  * `domain.gate.inputs`: what an evaluation looks at and what it decides (`GateInputs`,
    the facts, `Decision`, `RuleResult`), canonical and digestible;
  * `domain.gate.facts`: those facts built from aggregates (replay) and read-model rows;
  * `domain.gate.tally`: the facts that count, gathered once per evaluation (`Facts`);
  * `domain.gate.rules`: each kind of rule checked against them (`check_rule`, CEL expressions);
  * `domain.gate.windows`: freeze windows;
  * `domain.gate.evaluate`: `evaluate` and `applies` (does a rule's `when` match the profile);
  * `domain.gate.explain`: `summary` and `explain`, a decision told to people.
"""

from domain.gate.evaluate import applies, evaluate
from domain.gate.explain import explain, summary
from domain.gate.rules import EXPRESSION_VARIABLES, SBOM_FORMATS, Source
from domain.gate.tally import (
    APPROVABLE_STATUSES,
    MAX_LISTED_FINDINGS,
    REJECTABLE_STATUSES,
    SECRET_CWES,
    SECRET_TOOLS,
    is_secret,
)

__all__ = [
    "APPROVABLE_STATUSES",
    "EXPRESSION_VARIABLES",
    "MAX_LISTED_FINDINGS",
    "REJECTABLE_STATUSES",
    "SBOM_FORMATS",
    "SECRET_CWES",
    "SECRET_TOOLS",
    "Source",
    "applies",
    "evaluate",
    "explain",
    "is_secret",
    "summary",
]
