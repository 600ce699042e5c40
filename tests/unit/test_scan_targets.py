"""Scan targets and scan jobs, one story per command, on in-memory persistence."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest

from contracts.envelope import EventEnvelope
from contracts.targets import RegisterScanTarget, RequestScanJob, UpdateScanTarget
from domain.authz import Principal
from domain.errors import Conflict, Forbidden, IdempotencyMismatch, InvalidInput, NotFound
from domain.finding import Finding, finding_id
from domain.kernel import Idempotency
from domain.pearl_app import PearlApp
from domain.scan_job import ScanJob, backoff_seconds, next_step
from domain.scan_target import (
    ScanTarget,
    Scheduled,
    due_scheduled,
    parse_interval,
    scan_target_id,
    schedule_slot,
)
from domain.scanners.model import NormalizedFinding, ParsedReport
from domain.targets_app import RUNNER_ACTOR
from domain.wire import to_envelope
from services.scan_jobs import instruction
from services.scanners_local import ScannerError, invocation
from services.target_commands import register_scan_target
from services.target_commands import request_scan_job as bus_request_scan_job
from tests.unit.conftest import START, FakeClock, event_names, stored_events

BASE = 10.0  # back-off base seconds in these tests: retries after 20 s, then 40 s


@pytest.fixture
def app(clock: FakeClock) -> PearlApp:
    """The Application with the scan target commands (overrides the conftest `app`)."""
    return PearlApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)


def target_cmd(**overrides: Any) -> RegisterScanTarget:
    body: dict[str, Any] = {
        "name": "backend",
        "kind": "source",
        "location": "/srv/checkouts/backend",
        "scanners": ["bandit"],
    }
    body.update(overrides)
    # Built directly (not decoded): the domain's own checks are under test, not the contract's.
    return RegisterScanTarget(**body)


def position(app: PearlApp) -> int:
    return app.recorder.max_notification_id() or 0


@pytest.fixture
def target(app: PearlApp, project: UUID, org_admin: Principal) -> UUID:
    cmd = target_cmd(scanners=["bandit", "semgrep"], rules="/srv/rules/python.yml")
    return UUID(app.register_target(org_admin, project, cmd).ids["id"])


def job_ids(result_ids: dict[str, Any]) -> list[UUID]:
    return [UUID(job["id"]) for job in result_ids["jobs"]]


@pytest.fixture
def job(app: PearlApp, target: UUID, operator: Principal) -> UUID:
    (job_id,) = job_ids(app.request_scan_job(operator, target, "bandit").ids)
    return job_id


def report(*fingerprints: str) -> ParsedReport:
    findings = tuple(
        NormalizedFinding(
            tool="bandit",
            rule_id="B301",
            title="pickle",
            severity="medium",
            confidence="high",
            kind="code",
            path=f"app/{fp}.py",
            line=3,
            end_line=3,
            package=None,
            installed_version=None,
            fixed_version=None,
            cwe=("CWE-502",),
            cve=(),
            message="Pickle can be unsafe",
            fingerprint=fp * 8,
        )
        for fp in fingerprints
    )
    return ParsedReport(
        format="bandit-json", tool="bandit", tool_version="1.9.4", findings=findings
    )


# --- registering targets ---------------------------------------------------------------------


def test_register_target_records_its_definition_when_caller_is_org_admin(
    app: PearlApp, project: UUID, org_admin: Principal
) -> None:
    before = position(app)

    result = app.register_target(
        org_admin, project, target_cmd(schedule="6h", branch="release", timeout_seconds=120)
    )

    target = app.get_target(org_admin, UUID(result.ids["id"]))
    assert result.ids == {"id": str(target.id), "project_id": str(project), "name": "backend"}
    assert target.id == scan_target_id(str(project), "backend")
    assert result.position == before + 1
    assert (target.kind, target.location, target.scanners) == (
        "source",
        "/srv/checkouts/backend",
        ["bandit"],
    )
    assert (target.schedule, target.branch, target.timeout_seconds) == ("6h", "release", 120)
    assert event_names(app)[-1] == "ScanTarget.Registered"


def test_register_target_is_forbidden_when_caller_is_operator(
    app: PearlApp, project: UUID, operator: Principal
) -> None:
    before = position(app)

    with pytest.raises(Forbidden):
        app.register_target(operator, project, target_cmd())

    assert position(app) == before


def test_register_target_is_not_found_when_project_is_another_orgs(
    app: PearlApp, project: UUID, other_org: str, principal_of: Callable[..., Principal]
) -> None:
    intruder = principal_of(other_org, "admin")

    with pytest.raises(NotFound):
        app.register_target(intruder, project, target_cmd())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "image", "location": "registry.local/app:1"}, "cannot scan a 'image'"),
        ({"location": "srv/relative"}, "absolute path"),
        ({"location": "/srv/../etc"}, "'..'"),
        ({"location": "/srv/a\nb"}, "control characters"),
        ({"kind": "image", "location": "--config=/etc/passwd", "scanners": ["trivy"]}, "image"),
        ({"scanners": ["bandit", "bandit"]}, "unique"),
        ({"scanners": ["semgrep"]}, "rules"),
        ({"schedule": "30s"}, "between"),
        ({"kind": "iac", "scanners": ["pip-audit"]}, "cannot scan a 'iac'"),
    ],
    ids=[
        "bandit-on-image",
        "relative",
        "dotdot",
        "newline",
        "option-like-image",
        "duplicate",
        "semgrep-without-rules",
        "too-frequent",
        "pip-audit-on-iac",
    ],
)
def test_register_target_is_refused_and_records_nothing_when_definition_is_invalid(
    app: PearlApp,
    project: UUID,
    org_admin: Principal,
    overrides: dict[str, Any],
    message: str,
) -> None:
    before = position(app)

    with pytest.raises(InvalidInput, match=message):
        app.register_target(org_admin, project, target_cmd(**overrides))

    assert position(app) == before


def test_register_target_again_changes_nothing_when_definition_is_the_same(
    app: PearlApp, project: UUID, org_admin: Principal
) -> None:
    first = app.register_target(org_admin, project, target_cmd())
    before = position(app)

    again = app.register_target(org_admin, project, target_cmd())

    assert again.ids == first.ids
    assert position(app) == before


def test_register_target_conflicts_when_name_exists_with_another_definition(
    app: PearlApp, project: UUID, org_admin: Principal
) -> None:
    app.register_target(org_admin, project, target_cmd())

    with pytest.raises(Conflict, match="another definition"):
        app.register_target(org_admin, project, target_cmd(location="/srv/other"))


def test_register_target_replays_first_answer_when_idempotency_key_repeats(
    app: PearlApp, project: UUID, org_admin: Principal
) -> None:
    idem = Idempotency("k-1", "digest-a")
    first = app.register_target(org_admin, project, target_cmd(), idem)

    again = app.register_target(org_admin, project, target_cmd(), idem)

    assert again.replayed and again.ids == first.ids and again.position == first.position
    with pytest.raises(IdempotencyMismatch):
        app.register_target(org_admin, project, target_cmd(), Idempotency("k-1", "digest-b"))


def test_update_target_records_new_definition_only_when_it_changes(
    app: PearlApp, target: UUID, org_admin: Principal
) -> None:
    body = {"kind": "source", "location": "/srv/moved", "scanners": ["bandit"], "schedule": "1d"}
    update = msgspec.convert(body, UpdateScanTarget)

    app.update_target(org_admin, target, update)
    before = position(app)
    app.update_target(org_admin, target, update)

    changed = app.get_target(org_admin, target)
    assert (changed.location, changed.scanners, changed.schedule) == (
        "/srv/moved",
        ["bandit"],
        "1d",
    )
    assert event_names(app).count("ScanTarget.Updated") == 1
    assert position(app) == before


def test_register_target_reregisters_the_name_when_it_was_removed(
    app: PearlApp, project: UUID, target: UUID, org_admin: Principal
) -> None:
    app.remove_target(org_admin, target, "repository archived")

    result = app.register_target(org_admin, project, target_cmd(location="/srv/new"))

    back = app.get_target(org_admin, target)
    assert UUID(result.ids["id"]) == target
    assert (back.removed, back.location) == (False, "/srv/new")
    assert event_names(app)[-2:] == ["ScanTarget.Removed", "ScanTarget.Reregistered"]


def test_remove_target_conflicts_when_already_removed(
    app: PearlApp, target: UUID, org_admin: Principal
) -> None:
    app.remove_target(org_admin, target)

    with pytest.raises(Conflict, match="already removed"):
        app.remove_target(org_admin, target)


# --- requesting jobs ---------------------------------------------------------------------------


def test_request_scan_job_queues_one_job_per_scanner_when_none_is_named(
    app: PearlApp, target: UUID, operator: Principal
) -> None:
    result = app.request_scan_job(operator, target)

    jobs = [app.get_job(operator, job_id) for job_id in job_ids(result.ids)]
    assert sorted(j.scanner for j in jobs) == ["bandit", "semgrep"]
    assert all(j.status == "queued" and j.attempts == 0 for j in jobs)
    assert all(j.target_id == str(target) and j.trigger == "manual" for j in jobs)
    assert all(
        j.requested_at == START.isoformat() and j.requested_by == operator.actor for j in jobs
    )
    assert {j.rules for j in jobs} == {"/srv/rules/python.yml"}


def test_request_scan_job_is_refused_when_target_has_no_such_scanner(
    app: PearlApp, target: UUID, operator: Principal
) -> None:
    with pytest.raises(InvalidInput, match="no scanner 'checkov'"):
        app.request_scan_job(operator, target, "checkov")


def test_request_scan_job_is_forbidden_when_caller_is_viewer(
    app: PearlApp, target: UUID, org: str, principal_of: Callable[..., Principal]
) -> None:
    with pytest.raises(Forbidden):
        app.request_scan_job(principal_of(org, "viewer"), target)


def test_request_scan_job_conflicts_when_target_was_removed(
    app: PearlApp, target: UUID, org_admin: Principal, operator: Principal
) -> None:
    app.remove_target(org_admin, target)

    with pytest.raises(Conflict, match="removed"):
        app.request_scan_job(operator, target)


# --- running jobs ------------------------------------------------------------------------------


def test_job_is_retried_with_backoff_then_fails_finally_when_every_attempt_fails(
    app: PearlApp, job: UUID, clock: FakeClock
) -> None:
    run = app.start_job(job)
    assert run is not None and run.attempt == 1

    first = app.job_failed(job, "bandit exited with status 2: boom", backoff_base=BASE)

    assert first.ids["retry_at"] == (START + timedelta(seconds=20)).isoformat()
    clock.advance(seconds=19)
    with pytest.raises(Conflict, match="may not retry before"):
        app.start_job(job)
    clock.advance(seconds=1)
    assert (second := app.start_job(job)) is not None and second.attempt == 2
    assert app.job_failed(job, "again", backoff_base=BASE).ids["status"] == "retry_wait"
    clock.advance(seconds=40)
    assert (third := app.start_job(job)) is not None and third.attempt == 3
    last = app.job_failed(job, "and again", backoff_base=BASE)

    final = app.load(ScanJob, job, "job")
    assert (last.ids["status"], last.ids["retry_at"]) == ("failed", None)
    assert (final.status, final.attempts, final.last_error) == ("failed", 3, "and again")
    assert [n for n in event_names(app) if n.startswith("ScanJob.")] == [
        "ScanJob.Requested",
        "ScanJob.Started",
        "ScanJob.Failed",
        "ScanJob.Retried",
        "ScanJob.Failed",
        "ScanJob.Retried",
        "ScanJob.Failed",
    ]
    failed = [e for e, _ in stored_events(app) if type(e).__qualname__ == "ScanJob.Failed"]
    assert [(e.attempt, e.will_retry) for e in failed] == [(1, True), (2, True), (3, False)]
    with pytest.raises(Conflict):
        app.start_job(job)


def test_job_fails_without_retry_when_failure_is_permanent(app: PearlApp, job: UUID) -> None:
    app.start_job(job)

    result = app.job_failed(
        job, "scanner 'bandit' is not installed", backoff_base=BASE, permanent=True
    )

    assert (result.ids["status"], result.ids["retry_at"]) == ("failed", None)


def test_job_succeeds_with_scan_id_and_counts_when_its_report_is_ingested(
    app: PearlApp, job: UUID, project: UUID, operator: Principal
) -> None:
    app.start_job(job)

    ingested = app.ingest_job_report(job, report("a", "b"), "d" * 64, 10)
    done = app.job_succeeded(job, ingested.ids, "1.9.4")

    state = app.get_job(operator, job)
    assert done.ids == {"id": str(job), "status": "succeeded", "scan_id": ingested.ids["scan_id"]}
    assert state.counts == {"new": 2, "seen_again": 0, "reopened": 0, "fixed": 0, "total": 2}
    scan = app.get_scan(operator, UUID(state.scan_id or ""))
    assert (scan.target, scan.branch, scan.full) == ("backend", "main", True)
    finding = app.load(Finding, finding_id(project, "a" * 8), "finding")
    assert finding.tool == "bandit"
    submitted = [e for e, _ in stored_events(app) if type(e).__qualname__ == "ScanReport.Submitted"]
    assert submitted[0].actor == RUNNER_ACTOR


def test_job_report_is_ingested_once_when_ingest_runs_again_for_the_same_job(
    app: PearlApp, job: UUID
) -> None:
    app.start_job(job)
    assert app.job_ingested(job) is None
    first = app.ingest_job_report(job, report("a"), "1" * 64, 10)
    before = position(app)

    again = app.ingest_job_report(job, report("a", "b"), "2" * 64, 11)

    assert again.replayed and again.ids == first.ids
    assert position(app) == before
    assert app.job_ingested(job) == first.ids


def test_start_job_cancels_the_job_when_its_target_was_removed(
    app: PearlApp, job: UUID, target: UUID, org_admin: Principal
) -> None:
    app.remove_target(org_admin, target)

    assert app.start_job(job) is None

    cancelled = app.get_job(org_admin, job)
    assert (cancelled.status, cancelled.last_error) == (
        "cancelled",
        "scan target 'backend' was removed",
    )


def test_job_succeeded_conflicts_when_job_is_not_running(app: PearlApp, job: UUID) -> None:
    with pytest.raises(Conflict, match="only a running job"):
        app.job_succeeded(job, {"scan_id": str(uuid4()), "counts": {}})


def test_get_job_is_not_found_when_job_is_another_orgs(
    app: PearlApp, job: UUID, other_org: str, principal_of: Callable[..., Principal]
) -> None:
    with pytest.raises(NotFound):
        app.get_job(principal_of(other_org, "viewer"), job)


@pytest.mark.parametrize(
    ("attempts_failed", "advance", "attempt", "expected"),
    [
        (0, 0, 1, ("run", 0.0)),
        (1, 5, 2, ("wait", 15.0)),
        (1, 20, 2, ("run", 0.0)),
        (0, 0, 2, ("skip", 0.0)),
        (1, 20, 1, ("skip", 0.0)),
    ],
    ids=["queued", "backoff-pending", "backoff-over", "attempt-ahead", "stale-instruction"],
)
def test_next_step_follows_the_jobs_state_when_instruction_arrives(
    app: PearlApp,
    job: UUID,
    clock: FakeClock,
    attempts_failed: int,
    advance: float,
    attempt: int,
    expected: tuple[str, float],
) -> None:
    for _ in range(attempts_failed):
        app.start_job(job)
        app.job_failed(job, "boom", backoff_base=BASE)
    clock.advance(seconds=advance)

    step = app.job_step(job, attempt, grace=5.0)

    assert (step.action, step.delay) == expected


def test_next_step_recovers_a_running_attempt_only_when_its_timeout_and_grace_passed(
    app: PearlApp, job: UUID, clock: FakeClock
) -> None:
    app.start_job(job)  # the target's timeout is 600 s
    clock.advance(seconds=600)
    assert (app.job_step(job, 1, grace=60.0).action, app.job_step(job, 1, grace=60.0).delay) == (
        "wait",
        60.0,
    )

    clock.advance(seconds=60)

    assert app.job_step(job, 1, grace=60.0).action == "recover"
    loaded = app.load(ScanJob, job, "job")
    assert next_step(loaded, 2, clock(), 60.0).action == "skip"


# --- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("6h", 21600), ("1d", 86400)]
)
def test_parse_interval_gives_seconds_when_schedule_is_valid(text: str, seconds: int) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "6", "h", "0h", "1w", "-1h", "6h ", "91d", "59s"])
def test_parse_interval_is_refused_when_schedule_is_invalid(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_interval(text)


def test_schedule_slot_stays_within_interval_and_moves_after_it() -> None:
    target = uuid4()
    now = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)

    slot = schedule_slot(target, 3600, now)

    assert slot <= now < slot + timedelta(hours=1)
    assert schedule_slot(target, 3600, slot) == slot
    assert schedule_slot(target, 3600, slot + timedelta(minutes=59, seconds=59)) == slot
    assert schedule_slot(target, 3600, slot + timedelta(hours=1)) == slot + timedelta(hours=1)


def test_due_scheduled_skips_a_target_when_its_current_slot_was_requested() -> None:
    now = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    fresh, done, old = uuid4(), uuid4(), uuid4()
    done_slot = schedule_slot(done, 3600, now)
    old_slot = schedule_slot(old, 3600, now) - timedelta(hours=1)

    due = due_scheduled(
        [Scheduled(fresh, "1h"), Scheduled(done, "1h", done_slot), Scheduled(old, "1h", old_slot)],
        now,
    )

    assert due == [(fresh, schedule_slot(fresh, 3600, now)), (old, schedule_slot(old, 3600, now))]


def test_request_scheduled_jobs_requests_a_slot_once_when_called_twice(
    app: PearlApp, project: UUID, org_admin: Principal, clock: FakeClock
) -> None:
    tid = UUID(app.register_target(org_admin, project, target_cmd(schedule="1h")).ids["id"])
    slot = schedule_slot(tid, 3600, clock())

    first = app.request_scheduled_jobs(tid, slot)
    clock.advance(seconds=30)
    again = app.request_scheduled_jobs(tid, slot)

    (job_id,) = job_ids(first.ids)
    assert again.ids["jobs"] == []
    scheduled = app.get_job(org_admin, job_id)
    assert (scheduled.trigger, scheduled.slot, scheduled.requested_by) == (
        "schedule",
        slot.isoformat(),
        "system:scheduler",
    )


def test_request_scheduled_jobs_requests_nothing_when_target_is_removed(
    app: PearlApp, project: UUID, org_admin: Principal, clock: FakeClock
) -> None:
    tid = UUID(app.register_target(org_admin, project, target_cmd(schedule="1h")).ids["id"])
    app.remove_target(org_admin, tid)
    before = position(app)

    result = app.request_scheduled_jobs(tid, schedule_slot(tid, 3600, clock()))

    assert result.ids["jobs"] == [] and position(app) == before


# --- wire and runner instructions --------------------------------------------------------------


def test_events_map_to_plain_json_envelopes_when_published(
    app: PearlApp, job: UUID, target: UUID, org_admin: Principal
) -> None:
    app.start_job(job)
    app.job_failed(job, "boom", backoff_base=BASE)
    app.remove_target(org_admin, target)

    envelopes = [to_envelope(e, p) for e, p in stored_events(app)]

    ours = [env for env in envelopes if env.aggregate in {"scan_target", "scan_job"}]
    assert [env.type for env in ours] == [
        "pearl.scan_target.registered.v1",
        "pearl.scan_job.requested.v1",
        "pearl.scan_job.started.v1",
        "pearl.scan_job.failed.v1",
        "pearl.scan_target.removed.v1",
    ]
    decoded = msgspec.json.decode(msgspec.json.encode(ours), type=list[EventEnvelope])
    assert decoded == ours
    assert ours[1].data["project_id"] and ours[0].data["project_id"]  # scoped to the project


def test_instruction_names_the_next_attempt_when_event_calls_for_one(
    app: PearlApp, job: UUID
) -> None:
    app.start_job(job)
    app.job_failed(job, "boom", backoff_base=BASE)
    by_type = {
        env.type: env
        for env in (to_envelope(e, p) for e, p in stored_events(app))
        if env.aggregate == "scan_job"
    }

    assert instruction(by_type["pearl.scan_job.requested.v1"]) == 1
    assert instruction(by_type["pearl.scan_job.failed.v1"]) == 2
    assert instruction(by_type["pearl.scan_job.started.v1"]) is None


def test_backoff_doubles_per_attempt_when_base_is_given() -> None:
    assert [backoff_seconds(n, 30.0) for n in (1, 2)] == [60.0, 120.0]


# --- scanner command lines (pure) ---------------------------------------------------------------


def test_invocation_scans_from_inside_the_target_when_kind_is_source() -> None:
    bandit = invocation("bandit", "source", "/srv/app", "/usr/bin/bandit")
    semgrep = invocation("semgrep", "source", "/srv/app", "/usr/bin/semgrep", "/srv/rules.yml")

    assert (bandit.argv, bandit.cwd) == (
        ["/usr/bin/bandit", "-r", ".", "-f", "json", "-q"],
        "/srv/app",
    )
    assert bandit.ok_codes == {0, 1}
    assert semgrep.argv[:4] == ["/usr/bin/semgrep", "scan", "--config", "/srv/rules.yml"]
    assert "--metrics=off" in semgrep.argv and semgrep.argv[-1] == "."
    assert semgrep.ok_codes == {0}


def test_invocation_passes_the_reference_when_kind_is_image() -> None:
    trivy = invocation("trivy", "image", "registry.local/app:1", "/usr/bin/trivy")

    assert trivy.argv[-1] == "registry.local/app:1" and trivy.cwd is None


@pytest.mark.parametrize(
    ("scanner", "kind", "rules"),
    [("semgrep", "source", None), ("bandit", "image", None), ("nope", "source", None)],
)
def test_invocation_is_refused_permanently_when_scanner_cannot_run(
    scanner: str, kind: str, rules: str | None
) -> None:
    with pytest.raises(ScannerError) as caught:
        invocation(scanner, kind, "/srv/app", "/usr/bin/x", rules)

    assert caught.value.permanent


def test_target_aggregate_guards_run_before_any_event_when_update_is_invalid(
    app: PearlApp, target: UUID, org_admin: Principal
) -> None:
    before = position(app)
    loaded = app.load(ScanTarget, target, "target")

    with pytest.raises(InvalidInput):
        loaded.update(
            loaded.spec.__class__(kind="image", location="/srv/x", scanners=("bandit",)),
            org_admin.actor,
        )

    assert loaded.collect_events() == [] and position(app) == before


# --- bus handlers ------------------------------------------------------------------------------


def test_bus_register_and_request_reach_the_application_when_subject_org_matches(
    app: PearlApp, project: UUID, org: str, org_admin: Principal
) -> None:
    cmd = target_cmd(project_id=str(project))

    registered = register_scan_target(app, org_admin, org, cmd, None, None)
    request = RequestScanJob(target_id=registered.ids["id"])
    requested = bus_request_scan_job(app, org_admin, org, request, None, None)

    assert registered.ids["name"] == "backend"
    assert [j["scanner"] for j in requested.ids["jobs"]] == ["bandit"]


def test_bus_commands_are_not_found_when_subject_names_another_org(
    app: PearlApp, target: UUID, project: UUID, other_org: str, platform_admin: Principal
) -> None:
    before = position(app)

    with pytest.raises(NotFound):
        register_scan_target(
            app,
            platform_admin,
            other_org,
            target_cmd(name="x", project_id=str(project)),
            None,
            None,
        )
    with pytest.raises(NotFound):
        bus_request_scan_job(
            app, platform_admin, other_org, RequestScanJob(target_id=str(target)), None, None
        )

    assert position(app) == before


def test_bus_commands_are_refused_when_id_is_missing(
    app: PearlApp, org: str, org_admin: Principal
) -> None:
    with pytest.raises(InvalidInput, match=r"data\.project_id"):
        register_scan_target(app, org_admin, org, target_cmd(), None, None)
    with pytest.raises(InvalidInput, match=r"data\.target_id"):
        bus_request_scan_job(app, org_admin, org, RequestScanJob(), None, None)
