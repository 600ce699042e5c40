"""Remediation specs for findings: what is wrong, where, how to fix it, how we will know (pure).

Task packets are cut from findings here: grouped one per finding, or by rule, file or
package; each packet gets its spec, guard rails and a priority from severity and SLA.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from domain.errors import InvalidInput
from domain.finding import SEVERITIES, Finding
from domain.gate import SECRET_CWES, SECRET_TOOLS

#: What the holder of a packet may never do; enforced by authorization for every agent.
FORBIDDEN_OPERATIONS = (
    "approval.decide",
    "exception.decide",
    "policy.manage",
    "agent.manage",
    "apikey.issue",
)
_PRIORITY = {"critical": 1, "high": 2, "medium": 3, "low": 4, "info": 4}


@dataclass(frozen=True, slots=True)
class Target:
    """One finding a packet must make disappear, as the packet records it."""

    id: str
    fingerprint: str
    tool: str
    rule_id: str
    title: str
    severity: str
    path: str | None = None
    line: int | None = None
    package: str | None = None
    installed_version: str | None = None
    fixed_version: str | None = None
    cwe: list[str] = field(default_factory=list)
    cve: list[str] = field(default_factory=list)
    message: str = ""
    kind: str | None = None
    sla_due: str | None = None

    @classmethod
    def of(cls, f: Finding) -> Target:
        d = f.details
        return cls(
            id=str(f.id),
            fingerprint=f.fingerprint,
            tool=f.tool,
            rule_id=f.rule_id,
            title=f.title,
            severity=f.severity,
            path=d.get("path"),
            line=d.get("line"),
            package=d.get("package"),
            installed_version=d.get("installed_version"),
            fixed_version=d.get("fixed_version"),
            cwe=list(d.get("cwe") or []),
            cve=list(d.get("cve") or []),
            message=d.get("message") or "",
            kind=d.get("kind"),
            sla_due=f.sla_due,
        )

    @property
    def is_secret(self) -> bool:
        return (
            self.kind == "secret"
            or self.tool.lower() in SECRET_TOOLS
            or "secret" in self.rule_id.lower()
            or not SECRET_CWES.isdisjoint(self.cwe)
        )


def guidance(t: Target) -> str:
    """How to fix one finding, in words an agent (or a person) can act on."""
    ids = ", ".join([*t.cve, *t.cwe])
    refs = f" ({ids})" if ids else ""
    if t.is_secret:
        return (
            f"Remove the secret from {t.path or 'the code'}, rotate the exposed credential, "
            f"and load it from the environment or a secret store instead{refs}."
        )
    if t.package:
        if t.fixed_version:
            return (
                f"Upgrade {t.package} from {t.installed_version or 'the installed version'} "
                f"to {t.fixed_version} or later{refs}."
            )
        return (
            f"No fixed version of {t.package} is known: replace or remove it, or request "
            f"an exception with compensating controls{refs}."
        )
    where = f"{t.path}:{t.line}" if t.path and t.line else t.path or "the reported location"
    detail = f": {t.message}" if t.message and t.message != t.title else ""
    return f"Fix {t.rule_id} ({t.title}) at {where}{detail}{refs}."


def remediation_for(targets: Sequence[Target], tools: Iterable[str] = ()) -> dict[str, Any]:
    """The remediation spec of one finding or a group: problem, locations, guidance, acceptance."""
    worst = worst_severity(t.severity for t in targets)
    first = targets[0]
    if len(targets) == 1:
        problem = f"{first.severity} {first.title}"
    else:
        problem = f"{len(targets)} findings, worst {worst}: {first.title}"
    scanners = sorted({*tools, *(t.tool for t in targets)})
    fingerprints = sorted(t.fingerprint for t in targets)
    return {
        "problem": problem,
        "locations": [
            {
                "finding_id": t.id,
                "path": t.path,
                "line": t.line,
                "package": t.package,
                "installed_version": t.installed_version,
            }
            for t in targets
        ],
        "guidance": sorted({guidance(t) for t in targets}),
        "acceptance": {
            "fingerprints_gone": fingerprints,
            "text": (
                f"The next full scan by {', '.join(scanners)} no longer reports these "
                f"{len(fingerprints)} fingerprint(s)."
            ),
        },
    }


def worst_severity(severities: Iterable[str]) -> str:
    """The most severe of these (`info` when there is none)."""
    ranks = [SEVERITIES.index(s) for s in severities if s in SEVERITIES]
    return SEVERITIES[min(ranks)] if ranks else "info"


def priority(targets: Sequence[Target], now: datetime) -> tuple[str, str | None]:
    """`p1`..`p4` from the worst severity, one step up once an SLA is overdue; and the due date."""
    rank = _PRIORITY[worst_severity(t.severity for t in targets)]
    dues = sorted(t.sla_due for t in targets if t.sla_due)
    due = dues[0] if dues else None
    if due and datetime.fromisoformat(due) <= now:
        rank = max(1, rank - 1)
    return f"p{rank}", due


@dataclass(frozen=True, slots=True)
class GuardRails:
    allowed_paths: list[str]
    max_changed_lines: int
    forbidden_operations: list[str] = field(default_factory=lambda: list(FORBIDDEN_OPERATIONS))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def violations(self, changed_files: Sequence[str], changed_lines: int) -> list[str]:
        """Every way a completed change breaks these rails (empty when it keeps to them)."""
        found = [
            f"{path!r} is outside the allowed paths {self.allowed_paths}"
            for path in changed_files
            if not path_allowed(path, self.allowed_paths)
        ]
        if changed_lines > self.max_changed_lines:
            found.append(f"{changed_lines} changed lines exceed the limit {self.max_changed_lines}")
        return found


def path_allowed(path: str, patterns: Iterable[str]) -> bool:
    """A repository-relative path matches a glob (`*` within a segment, `**` across them)."""
    clean = path.removeprefix("./")
    if clean.startswith("/") or ".." in clean.split("/") or "\\" in clean:
        return False
    return any(_glob(p.removeprefix("./")).fullmatch(clean) for p in patterns)


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


@dataclass(frozen=True, slots=True)
class PacketPlan:
    """One packet to create: its natural key, targets, spec, rails and priority."""

    key: str
    title: str
    targets: list[Target]
    spec: dict[str, Any]
    guard_rails: GuardRails
    priority: str
    due: str | None


def group_key(t: Target, group_by: str) -> str:
    if group_by == "rule":
        return f"rule:{t.tool}:{t.rule_id}"
    if group_by == "file" and t.path:
        return f"file:{t.path}"
    if group_by == "package" and t.package:
        return f"package:{t.package}"
    return f"finding:{t.fingerprint}"


def plan_packets(
    targets: Sequence[Target],
    group_by: str,
    allowed_paths: Sequence[str],
    max_changed_lines: int,
    now: datetime,
    limit: int,
) -> list[PacketPlan]:
    """Group findings into packets, most urgent first, at most `limit` of them."""
    groups: dict[str, list[Target]] = {}
    for t in sorted(targets, key=lambda t: t.fingerprint):
        groups.setdefault(group_key(t, group_by), []).append(t)
    plans = []
    for group, members in groups.items():
        paths = list(allowed_paths) or sorted({t.path for t in members if t.path})
        if not paths:
            raise InvalidInput(
                f"the findings of {group!r} name no file: give allowed_paths for the packet"
            )
        digest = hashlib.sha256("\n".join(t.fingerprint for t in members).encode()).hexdigest()
        level, due = priority(members, now)
        spec = remediation_for(members)
        plans.append(
            PacketPlan(
                key=f"{group}#{digest[:16]}",
                title=spec["problem"][:300],
                targets=members,
                spec=spec,
                guard_rails=GuardRails(paths, max_changed_lines),
                priority=level,
                due=due,
            )
        )
    plans.sort(key=lambda p: (p.priority, p.due or "~", p.key))
    return plans[:limit]
