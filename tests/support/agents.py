"""An agents story that stores every kind of agent and task packet event (for contract and
projection tests): an agent registered, its autonomy changed, packets cut from a scan's
findings, claimed, renewed, released (failed), expired, completed, verified and reopened by the
next full scan, and the kill switch taking a lease back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from contracts.agents import PauseAgent, RegisterAgent, ResumeAgent, SetAutonomy
from contracts.tasks import ClaimTask, CompleteTask, CreateTasks, ReleaseTask, TaskHeartbeat
from domain.authz import Principal
from domain.ingest import ScanMeta
from domain.pearl_app import PearlApp
from domain.scanners.model import NormalizedFinding, ParsedReport

TOOL = "story-scanner"


@dataclass
class AgentStory:
    agent: str
    token: str
    verified: str
    reopened: str
    revoked: str


def code_finding(n: int) -> NormalizedFinding:
    return NormalizedFinding(
        tool=TOOL,
        rule_id=f"py.rule{n}",
        title=f"issue {n}",
        severity=("high", "medium", "low")[n % 3],
        confidence=None,
        kind="code",
        path=f"app/mod{n}.py",
        line=n + 1,
        end_line=n + 1,
        package=None,
        installed_version=None,
        fixed_version=None,
        cwe=("CWE-89",),
        cve=(),
        message=f"problem {n}",
        fingerprint=f"{n:064x}",
    )


def full_scan(app: PearlApp, who: Principal, project: UUID, numbers: list[int], tag: str) -> None:
    report = ParsedReport("sarif", TOOL, "1", tuple(code_finding(n) for n in numbers))
    app.submit_scan(who, project, report, ScanMeta(digest=f"story-{tag}", size=1, full=True))


def agents_story(
    app: PearlApp, admin: Principal, org: str, project: UUID, clock: Any
) -> AgentStory:
    full_scan(app, admin, project, [1, 2, 3], "before")
    registered = app.register_agent(
        admin,
        org,
        RegisterAgent(
            slug="fixer",
            name="Fixer",
            owner="platform-team",
            capabilities=["code-fix"],
            autonomy={"*": "propose"},
        ),
    )
    token = registered.secret["token"]
    app.set_autonomy(admin, org, "fixer", SetAutonomy(level="act", reason="trusted for fixes"))
    agent = app.authenticate(token)
    cut = app.create_tasks(agent, project, CreateTasks(), _open_findings(app, project))
    one, two, three = (UUID(i) for i in cut.ids["created"])

    app.claim_task(agent, one, ClaimTask(ttl_seconds=60))
    app.heartbeat_task(agent, one, TaskHeartbeat(ttl_seconds=120))
    app.release_task(agent, one, ReleaseTask(reason="tests fail", failed=True))
    app.claim_task(agent, one, ClaimTask(ttl_seconds=60))
    clock.advance(minutes=5)
    app.expire_task_lease(one)

    for tid in (one, two):
        app.claim_task(agent, tid, ClaimTask())
        changed = [_path_of(app, tid)]
        app.complete_task(
            agent,
            tid,
            CompleteTask(branch="fix", changed_files=changed, changed_lines=3, summary="fixed"),
        )
    clock.advance(seconds=1)
    # the next full scan no longer reports what packet `one` targets; `two`'s finding remains
    gone = _number_of(app, one)
    full_scan(app, admin, project, [n for n in (1, 2, 3) if n != gone], "after")
    app.verify_tasks(_last_scan(app), [one, two])

    app.claim_task(agent, three, ClaimTask())
    app.pause_agent(admin, org, "fixer", PauseAgent(reason="incident"), [three])
    app.resume_agent(admin, org, "fixer", ResumeAgent(reason="resolved"))
    return AgentStory("fixer", token, str(one), str(two), str(three))


def _open_findings(app: PearlApp, project: UUID) -> list[UUID]:
    from domain.finding import Finding, finding_id

    ids = [finding_id(project, code_finding(n).fingerprint) for n in (1, 2, 3)]
    return [i for i, f in app.load_many(Finding, ids).items() if f.is_open]


def _path_of(app: PearlApp, tid: UUID) -> str:
    from domain.task_packet import TaskPacket

    return str(app.load(TaskPacket, tid, "task").targets[0]["path"])


def _number_of(app: PearlApp, tid: UUID) -> int:
    from domain.task_packet import TaskPacket

    return int(app.load(TaskPacket, tid, "task").targets[0]["fingerprint"], 16)


def _last_scan(app: PearlApp) -> UUID:
    for note in reversed(app.recorder.select_notifications(1, 100_000)):
        event = app.mapper.to_domain_event(note)
        if type(event).__qualname__.startswith("ScanReport."):
            return UUID(str(event.originator_id))
    raise AssertionError("no scan stored")
