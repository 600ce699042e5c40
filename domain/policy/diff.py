"""What changed between two versions of a policy document (their `policy_as_dict` forms)."""

from __future__ import annotations

from typing import Any


def diff_policies(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """Changes from `old` to `new` (`policy_as_dict` forms): top-level fields, then rules by id.

    A missing field and a null one are the same; a rule whose kind changes is removed and
    added. Order: top-level fields (sorted), removed rules (old order), then added and changed
    rules (new order), each rule's fields in its own order.
    """
    before = old or {}
    ops: list[dict[str, Any]] = []
    for name in sorted((set(before) | set(new)) - {"rules"}):
        ops += _field_ops(name, before.get(name), new.get(name))
    old_rules = _rules_by_id(before)
    new_rules = _rules_by_id(new)
    for rule_id, rule in old_rules.items():
        if rule_id not in new_rules or new_rules[rule_id].get("kind") != rule.get("kind"):
            ops.append({"op": "remove", "path": f"rules[id={rule_id}]", "old": rule, "new": None})
    for rule_id, rule in new_rules.items():
        previous = old_rules.get(rule_id)
        path = f"rules[id={rule_id}]"
        if previous is None or previous.get("kind") != rule.get("kind"):
            ops.append({"op": "add", "path": path, "old": None, "new": rule})
            continue
        for name in [*previous, *(key for key in rule if key not in previous)]:
            ops += _field_ops(f"{path}.{name}", previous.get(name), rule.get(name))
    return ops


def _rules_by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rules: dict[str, dict[str, Any]] = {}
    for rule in doc.get("rules") or []:
        rules.setdefault(str(rule.get("id")), rule)
    return rules


def _field_ops(path: str, old: Any, new: Any) -> list[dict[str, Any]]:
    if old == new:
        return []
    op = "add" if old is None else "remove" if new is None else "change"
    return [{"op": op, "path": path, "old": old, "new": new}]
