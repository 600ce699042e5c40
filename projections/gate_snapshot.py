"""The read-model rows a gate evaluation looks at, read in one consistent snapshot.

One REPEATABLE READ transaction reads the projection checkpoint and every table, so the rows
are exactly the state after the events up to that position: what the decision records as
`as_of_position`, and what a replay from the event store rebuilds.

The open findings (10,000s of rows) come as one JSON document already spelled as gate facts
(`FINDING_FACT`), decoded in one go, and are kept between evaluations (`OpenFindings`): a
`finding_view` row's `position` is the last event that changed it, so the rows of a project
whose position is above the greatest one read before are all that changed since.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec
from psycopg import AsyncCursor
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads

from domain.finding import OPEN_STATUSES
from domain.gate.facts import finding_fact
from domain.gate.inputs import FindingFact
from projections.queries import Pool
from projections.runner import CHECKPOINT, READER_ROLE


def utc_iso_sql(column: str) -> str:
    """`domain.gate.inputs.utc_iso` in SQL, for a timestamptz column (NULL stays NULL):
    UTC, ISO 8601, microseconds only when there are any."""
    return (
        f"replace(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'),"
        " '.000000', '') || '+00:00'"
    )


#: A finding_view row as the JSON array of a `FindingFact`, spelled as `finding_fact` spells
#: it. A row this cannot spell (a CWE that is not a string, say) fails to decode, and the
#: findings are then read row by row through `finding_fact` itself.
FINDING_FACT = (
    "json_build_array(id::text, severity, status, tool, sources, rule_id,"
    f" COALESCE(details->'cwe', '[]'::jsonb), path, {utc_iso_sql('sla_due')})"
)
OPEN = "status IN ('open', 'reopened')"
FINDINGS = (
    f"SELECT json_agg({FINDING_FACT} ORDER BY id) FROM finding_view"  # noqa: S608 - constants only
    f" WHERE project_id = %s AND {OPEN}"
)
FINDINGS_CHANGED = (
    f"SELECT json_agg({FINDING_FACT}) FROM finding_view"  # noqa: S608 - constants only
    " WHERE org = %s AND project_id = %s AND position > %s"
)
#: `max(position)` in effect; spelled so that row-level security still lets it read one row.
FINDINGS_POSITION = (
    "SELECT position FROM finding_view WHERE org = %s AND project_id = %s"
    " ORDER BY position DESC LIMIT 1"
)
FINDING_ROWS = (
    "SELECT id::text, severity, status, tool, sources, rule_id, details->'cwe' AS cwe, path,"
    " sla_due FROM finding_view WHERE project_id = %s AND status IN ('open', 'reopened')"
)
EXCEPTIONS = (
    "SELECT id::text, environment, finding_ids, rule_id, cwe, expires_at, approved_by"
    " FROM exception_view WHERE project_id = %s AND status = 'active'"
    " AND (environment IS NULL OR environment = %s) AND expires_at > %s"
)
SCANS = (
    "SELECT id::text, tool, format, full_scan, commit_sha, submitted_at FROM scan_view"
    " WHERE project_id = %s AND commit_sha = %s"
)
TESTS = (
    "SELECT id::text, suite, passed, failed, skipped, coverage, submitted_at FROM test_run_view"
    " WHERE project_id = %s AND commit_sha = %s"
)
APPROVALS = (
    "SELECT id::text, status, version_digest, requested_by, expires_at, decisions"
    " FROM approval_view WHERE promotion_id = %s"
)
ENVIRONMENT = (
    "SELECT current_digest, live_since, failed_digests FROM environment_view"
    " WHERE project_id = %s AND name = %s"
)
PROFILE = "SELECT profile FROM project_view WHERE id = %s"

_FACTS = msgspec.json.Decoder(list[FindingFact] | None)
_JSON = msgspec.json.Decoder()
_by_id = attrgetter("id")


class _JsonBytes(Loader):
    """A `json` value as its text, for msgspec to decode straight into facts."""

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


@dataclass(frozen=True, slots=True)
class _Known:
    position: int  # the greatest finding_view position of the project when read
    facts: tuple[FindingFact, ...]  # its open findings, sorted by id


class OpenFindings:
    """Open findings of the most recently evaluated projects, as gate facts, kept by the
    greatest `finding_view` position of the project (one per process, by the GateService)."""

    def __init__(self, projects: int = 16) -> None:
        self._projects = projects
        self._known: OrderedDict[tuple[str, str], _Known] = OrderedDict()

    async def read(
        self, cur: AsyncCursor[Any], org: str, project_id: str
    ) -> tuple[FindingFact, ...]:
        """The project's open findings as of the cursor's snapshot, sorted by id."""
        await cur.execute(FINDINGS_POSITION, (org, project_id))
        row = await cur.fetchone()
        position = int(row[0]) if row and row[0] is not None else 0
        key = (org, project_id)
        known = self._known.get(key)
        if known is not None and known.position == position:
            self._known.move_to_end(key)
            return known.facts
        if known is not None and known.position < position:
            facts = await _changed(cur, org, project_id, known)
        else:  # not known, or known from a later snapshot than this one
            facts = await _all_open(cur, project_id)
        if known is None or known.position < position:
            self._known[key] = _Known(position, facts)
            self._known.move_to_end(key)
            while len(self._known) > self._projects:
                self._known.popitem(last=False)
        return facts


async def _all_open(cur: AsyncCursor[Any], project_id: str) -> tuple[FindingFact, ...]:
    await cur.execute(FINDINGS, (project_id,))
    facts = await _decoded(cur)
    if facts is None:
        facts = await _row_by_row(cur, project_id)
    return tuple(sorted(facts, key=_by_id))


async def _changed(
    cur: AsyncCursor[Any], org: str, project_id: str, known: _Known
) -> tuple[FindingFact, ...]:
    """The known open findings with the rows changed since applied (closed ones dropped)."""
    await cur.execute(FINDINGS_CHANGED, (org, project_id, known.position))
    changed = await _decoded(cur)
    if changed is None:
        return await _all_open(cur, project_id)
    facts = {f.id: f for f in known.facts}
    for fact in changed:
        if fact.status in OPEN_STATUSES:
            facts[fact.id] = fact
        else:
            facts.pop(fact.id, None)
    return tuple(sorted(facts.values(), key=_by_id))


async def _decoded(cur: AsyncCursor[Any]) -> list[FindingFact] | None:
    """The fetched JSON facts; None when a row does not decode (read it row by row)."""
    row = await cur.fetchone()
    try:
        return (_FACTS.decode(row[0]) if row and row[0] is not None else None) or []
    except msgspec.ValidationError:
        return None


async def _row_by_row(cur: AsyncCursor[Any], project_id: str) -> list[FindingFact]:
    await cur.execute(FINDING_ROWS, (project_id,))
    return [finding_fact(*row) for row in await cur.fetchall()]


@dataclass(frozen=True, slots=True)
class GateSnapshot:
    position: int
    profile: dict[str, Any] | None
    findings: tuple[FindingFact, ...]
    exceptions: list[dict[str, Any]]
    scans: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    approvals: list[dict[str, Any]]
    previous: dict[str, Any] | None


async def read_snapshot(
    pool: Pool,
    org: str,
    *,
    project_id: str,
    promotion_id: str,
    environment: str,
    from_environment: str | None,
    commit: str,
    now: datetime,
    findings: OpenFindings | None = None,
) -> GateSnapshot:
    """Everything a gate evaluation reads, at the projection checkpoint read with it;
    `findings` keeps the open findings between calls (None: read them all)."""
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        cur.adapters.register_loader("json", _JsonBytes)
        await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        await cur.execute(f"SET LOCAL ROLE {READER_ROLE}")
        await cur.execute("SELECT set_config('pearl.org', %s, true)", (org,))
        await cur.execute(
            "SELECT position FROM projection_checkpoint WHERE name = %s", (CHECKPOINT,)
        )
        row = await cur.fetchone()
        position = int(row[0]) if row else 0
        open_findings = await (findings or OpenFindings(0)).read(cur, org, project_id)
        dcur = conn.cursor(row_factory=dict_row)
        set_json_loads(_JSON.decode, dcur)
        await dcur.execute(PROFILE, (project_id,))
        profile_row = await dcur.fetchone()
        await dcur.execute(EXCEPTIONS, (project_id, environment, now))
        exceptions = await dcur.fetchall()
        await dcur.execute(SCANS, (project_id, commit))
        scans = await dcur.fetchall()
        await dcur.execute(TESTS, (project_id, commit))
        tests = await dcur.fetchall()
        await dcur.execute(APPROVALS, (promotion_id,))
        approvals = await dcur.fetchall()
        previous = None
        if from_environment is not None:
            await dcur.execute(ENVIRONMENT, (project_id, from_environment))
            previous = await dcur.fetchone()
    return GateSnapshot(
        position=position,
        profile=profile_row["profile"] if profile_row else None,
        findings=open_findings,
        exceptions=exceptions,
        scans=scans,
        tests=tests,
        approvals=approvals,
        previous=previous,
    )
