"""Whole-report finishing: drop duplicate results, then give each finding a stable fingerprint."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from domain.scanners.common import canonical_hash
from domain.scanners.model import Draft, NormalizedFinding

_CODE_SCHEME = "pearl-finding-v1"
_DEPENDENCY_SCHEME = "pearl-dependency-v1"


def finalize(drafts: Iterable[Draft]) -> tuple[NormalizedFinding, ...]:
    """De-duplicate a report's drafts and freeze them with fingerprints, in report order."""
    unique = _dedupe(drafts)
    prints = _fingerprints(unique)
    return tuple(draft.finish(print_) for draft, print_ in zip(unique, prints, strict=True))


def dependency_key(draft: Draft) -> tuple[str, str, str] | None:
    """Return (vulnerability, package, installed version) for a package finding, else None."""
    if draft.kind != "dependency" or not draft.vuln_id or not draft.package_name:
        return None
    return draft.vuln_id.upper(), draft.package_name.lower(), draft.installed_version or ""


def _identity(draft: Draft) -> tuple[object, ...]:
    """Return what makes two results the same finding: package vuln, or rule+path+line+key."""
    dependency = dependency_key(draft)
    if dependency is not None:
        return ("dependency", *dependency)
    return ("finding", draft.tool, draft.rule_id, draft.path, draft.line, draft.key)


def _dedupe(drafts: Iterable[Draft]) -> list[Draft]:
    """Keep the first of several identical results (tools sometimes report one twice)."""
    seen: set[tuple[object, ...]] = set()
    unique: list[Draft] = []
    for draft in drafts:
        identity = _identity(draft)
        if identity not in seen:
            seen.add(identity)
            unique.append(draft)
    return unique


def _fingerprints(drafts: list[Draft]) -> list[str]:
    """Hash each finding's base key plus its occurrence index among equal keys, ordered by line.

    The line number never enters the hash, so moving code keeps the fingerprint; the occurrence
    index only separates identical snippets matched at several places in one file.
    """
    prints = [""] * len(drafts)
    groups: defaultdict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, draft in enumerate(drafts):
        dependency = dependency_key(draft)
        if dependency is not None:
            prints[index] = canonical_hash([_DEPENDENCY_SCHEME, *dependency])
        else:
            groups[(draft.tool, draft.rule_id, draft.path or "", draft.key)].append(index)
    for base, members in groups.items():
        members.sort(key=lambda i: (drafts[i].line or 0, drafts[i].end_line or 0, i))
        for occurrence, index in enumerate(members):
            prints[index] = canonical_hash([_CODE_SCHEME, *base, occurrence])
    return prints
