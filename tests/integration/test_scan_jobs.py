"""Scan jobs end to end: a real scanner (Bandit) on a real directory, through the real ingestion
path, against real PostgreSQL and NATS; retries and final failure; the HTTP API; the handling of
the scanner process (timeout, errors, environment).

Until scan targets are wired into PearlApp, the API routes and the projector, these tests use
`PearlApp`, mount `services.api.targets.ROUTES` on an API of their own, and apply the scan
target projection themselves (`project_targets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from domain.pearl_app import PearlApp
from domain.scan_job import ScanJob
from domain.wire import to_envelope
from projections import targets as target_projection
from projections.base import Batch
from projections.runner import POLICY, READER_ROLE
from services.api import targets as targets_api
from services.api.app import create_app
from services.api.context import ApiContext
from services.reports import ReportStore
from services.runtime import read_pool
from services.scan_jobs import ScanJobRunner, ScanSettings
from services.scanners_local import (
    Invocation,
    ScannerError,
    check_rules,
    installed,
    run_process,
    run_scanner,
)
from tests.support.helpers import eventually, issue_key, make_org_and_project
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

VULNERABLE = textwrap.dedent(
    """\
    import pickle


    def load(blob):
        assert blob, "empty"
        return pickle.loads(blob)
    """
)
FAST = ScanSettings(backoff_base_seconds=0.05, grace_seconds=1.0, ack_wait_seconds=5.0)


@dataclass
class Scans:
    """The scan-target-enabled Application, an API with the target routes, and a job runner."""

    app: PearlApp
    http: httpx.AsyncClient
    runner: ScanJobRunner
    database_url: str


@pytest.fixture
async def scans(stack: Stack) -> AsyncIterator[Scans]:
    _, database_url = stack.settings.require_urls()
    app = await asyncio.to_thread(PearlApp, env=stack.settings.event_store_env())
    await _grant_reader(database_url)
    pool = read_pool(database_url, 2)
    await pool.open()
    reports = ReportStore(stack.nc.jetstream(), stack.subjects)
    ctx = ApiContext(settings=stack.settings, pearl=app, pool=pool, nc=stack.nc, reports=reports)
    api = create_app(ctx)
    if "/v1/scanners" not in {route.path for route in api.routes}:  # not wired into create_app yet
        for route in targets_api.ROUTES:
            api.register(route)
    runner = ScanJobRunner(app, stack.nc.jetstream(), stack.subjects, reports, FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    transport = httpx.ASGITransport(app=api)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://pearl.test") as http:
            yield Scans(app, http, runner, database_url)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await pool.close()
        app.close()


async def _grant_reader(database_url: str) -> None:
    """What `migrate` does for every read model once the projection is in PROJECTIONS."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for table in target_projection.PROJECTION.tables:
            await conn.execute(f"GRANT SELECT ON {table} TO {READER_ROLE}")
            await conn.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            await conn.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
            await conn.execute(
                f"CREATE POLICY {POLICY} ON {table} FOR SELECT TO {READER_ROLE} USING ("
                "org = current_setting('pearl.org', true)"
                " OR current_setting('pearl.org', true) = '*')"
            )


async def project_targets(scans: Scans) -> None:
    """Apply the scan target projection to every stored scan target/job event.

    Applying the same events again must change nothing (version guards), so this replays all
    of them each time; once the projection is in `projections.runner.PROJECTIONS` the projector
    does this and the tests can wait on `min_position` instead.
    """

    def load() -> list[Any]:
        notifications = scans.app.recorder.select_notifications(1, 1_000_000)
        return [
            to_envelope(scans.app.mapper.to_domain_event(n), n.id)
            for n in notifications
            if n.topic.startswith(("domain.scan_target:", "domain.scan_job:"))
        ]

    envelopes = await asyncio.to_thread(load)
    async with (
        await psycopg.AsyncConnection.connect(scans.database_url) as conn,
        conn.transaction(),
        conn.cursor() as cur,
    ):
        for env in envelopes:
            await target_projection.PROJECTION.apply(cur, env, Batch())


def bandit_or_skip() -> None:
    if "bandit" not in installed(refresh=True):
        pytest.skip("bandit is not installed (pip install bandit)")


def source_tree(root: Path) -> Path:
    src = root / "src"
    src.mkdir()
    (src / "app.py").write_text(VULNERABLE)
    return src


async def job_state(scans: Scans, job_id: UUID) -> ScanJob:
    return await asyncio.to_thread(scans.app.load, ScanJob, job_id, "job")


async def job_events(scans: Scans, job_id: UUID) -> list[Any]:
    return await asyncio.to_thread(lambda: list(scans.app.events.get(job_id)))


async def register_and_request(
    stack: Stack, scans: Scans, location: str, scanners: list[str]
) -> tuple[str, str, UUID, dict[str, str]]:
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    admin = await issue_key(stack.http, stack.admin, org, "admin")
    operator = await issue_key(stack.http, stack.admin, org, "operator")
    r = await scans.http.post(
        f"/v1/projects/{project}/targets",
        json={"name": "app", "kind": "source", "location": location, "scanners": scanners},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    target_id = r.json()["id"]
    r = await scans.http.post(f"/v1/targets/{target_id}/jobs", json={}, headers=operator)
    assert r.status_code == 202, r.text
    (job,) = r.json()["jobs"]
    return project, target_id, UUID(job["id"]), operator


# --- end to end ----------------------------------------------------------------------------------


async def test_bandit_job_ingests_findings_and_succeeds_when_source_has_issues(
    stack: Stack, scans: Scans, tmp_path: Path
) -> None:
    bandit_or_skip()
    src = source_tree(tmp_path)

    project, target_id, job_id, operator = await register_and_request(
        stack, scans, str(src), ["bandit"]
    )

    async def finished() -> ScanJob | None:
        job = await job_state(scans, job_id)
        return job if job.status in {"succeeded", "failed"} else None

    job = await eventually(finished, timeout=60)
    assert job.status == "succeeded", job.last_error
    assert job.counts == {"new": 3, "seen_again": 0, "reopened": 0, "fixed": 0, "total": 3}
    types = [type(e).__qualname__ for e in await job_events(scans, job_id)]
    assert types == ["ScanJob.Requested", "ScanJob.Started", "ScanJob.Succeeded"]
    r = await stack.http.get(
        f"/v1/projects/{project}/findings",
        params={"min_position": stack.app.recorder.max_notification_id()},
        headers=operator,
    )
    findings = r.json()["items"]
    assert sorted(f["rule_id"] for f in findings) == ["B101", "B301", "B403"]
    assert {(f["tool"], f["path"], f["status"]) for f in findings} == {("bandit", "app.py", "open")}
    scan = (await stack.http.get(f"/v1/scans/{job.scan_id}", headers=operator)).json()
    assert (scan["tool"], scan["target"], scan["full"]) == ("bandit", "app", True)
    async with ReportStore(stack.nc.jetstream(), stack.subjects).fetch(scan["digest"]) as kept:
        assert kept.size == scan["size"]

    await project_targets(scans)
    r = await scans.http.get(f"/v1/jobs/{job_id}", headers=operator)
    assert r.status_code == 200, r.text
    view = r.json()
    assert (view["status"], view["attempt"], view["scan_id"]) == ("succeeded", 1, job.scan_id)
    assert view["counts"]["new"] == 3
    assert [h["type"] for h in view["history"]] == [
        "pearl.scan_job.requested.v1",
        "pearl.scan_job.started.v1",
        "pearl.scan_job.succeeded.v1",
    ]
    targets = (await scans.http.get(f"/v1/projects/{project}/targets", headers=operator)).json()
    assert [(t["id"], t["last_job_status"]) for t in targets["items"]] == [(target_id, "succeeded")]


async def test_redelivered_instruction_changes_nothing_when_job_already_succeeded(
    stack: Stack, scans: Scans, tmp_path: Path
) -> None:
    bandit_or_skip()
    _, _, job_id, _ = await register_and_request(
        stack, scans, str(source_tree(tmp_path)), ["bandit"]
    )

    async def succeeded() -> bool:
        return (await job_state(scans, job_id)).status == "succeeded"

    await eventually(succeeded, timeout=60)
    before = len(await job_events(scans, job_id))

    step = await scans.runner.process(job_id, 1)

    assert step.action == "skip"
    assert len(await job_events(scans, job_id)) == before


async def test_job_fails_after_three_attempts_with_backoff_when_location_is_missing(
    stack: Stack, scans: Scans, tmp_path: Path
) -> None:
    bandit_or_skip()
    missing = tmp_path / "not-checked-out"

    project, _, job_id, operator = await register_and_request(
        stack, scans, str(missing), ["bandit"]
    )

    async def failed() -> ScanJob | None:
        job = await job_state(scans, job_id)
        return job if job.status == "failed" else None

    job = await eventually(failed, timeout=60)
    events = await job_events(scans, job_id)
    assert [type(e).__qualname__ for e in events] == [
        "ScanJob.Requested",
        "ScanJob.Started",
        "ScanJob.Failed",
        "ScanJob.Retried",
        "ScanJob.Failed",
        "ScanJob.Retried",
        "ScanJob.Failed",
    ]
    failures = [e for e in events if type(e).__qualname__ == "ScanJob.Failed"]
    assert [(e.attempt, e.will_retry) for e in failures] == [(1, True), (2, True), (3, False)]
    assert all("does not exist" in e.reason for e in failures)
    retries = [e for e in events if type(e).__qualname__ == "ScanJob.Retried"]
    for failure, retry in zip(failures, retries, strict=False):
        assert retry.started_at >= failure.retry_at  # back-off respected
    assert job.attempts == 3 and job.scan_id is None
    r = await stack.http.get(f"/v1/projects/{project}/scans", headers=operator)
    assert r.json()["items"] == []


# --- HTTP ----------------------------------------------------------------------------------------


async def test_scanners_endpoint_lists_bandit_with_its_version_when_installed(
    stack: Stack, scans: Scans
) -> None:
    bandit_or_skip()

    r = await scans.http.get("/v1/scanners", headers=stack.admin)

    assert r.status_code == 200
    bandit = next(i for i in r.json()["items"] if i["name"] == "bandit")
    assert bandit["version"] and bandit["version"][0].isdigit()
    assert bandit["kinds"] == ["source"]
    assert "executable" not in bandit


async def test_target_commands_answer_problems_when_refused(
    stack: Stack, scans: Scans, tmp_path: Path
) -> None:
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    operator = await issue_key(stack.http, stack.admin, org, "operator")
    other, _, _ = await make_org_and_project(stack.http, stack.admin)
    intruder = await issue_key(stack.http, stack.admin, other, "admin")
    body = {"name": "app", "kind": "source", "location": str(tmp_path), "scanners": ["bandit"]}

    as_operator = await scans.http.post(
        f"/v1/projects/{project}/targets", json=body, headers=operator
    )
    cross_org = await scans.http.post(
        f"/v1/projects/{project}/targets", json=body, headers=intruder
    )
    misfit = await scans.http.post(
        f"/v1/projects/{project}/targets",
        json={**body, "kind": "image", "location": "registry.local/app:1"},
        headers=stack.admin,
    )
    unknown = await scans.http.post(
        f"/v1/projects/{project}/targets", json={**body, "extra": 1}, headers=stack.admin
    )

    assert (as_operator.status_code, as_operator.json()["type"]) == (
        403,
        "urn:pearl:problem:forbidden",
    )
    assert (cross_org.status_code, cross_org.json()["type"]) == (404, "urn:pearl:problem:not-found")
    assert (misfit.status_code, misfit.json()["type"]) == (422, "urn:pearl:problem:invalid-input")
    assert unknown.status_code == 400
    assert misfit.headers["content-type"].startswith("application/problem+json")


async def test_target_lifecycle_over_http_when_updated_and_removed(
    stack: Stack, scans: Scans, tmp_path: Path
) -> None:
    org, project, _ = await make_org_and_project(stack.http, stack.admin)
    admin = await issue_key(stack.http, stack.admin, org, "admin")
    body = {"name": "infra", "kind": "iac", "location": str(tmp_path), "scanners": ["checkov"]}
    target_id = (
        await scans.http.post(f"/v1/projects/{project}/targets", json=body, headers=admin)
    ).json()["id"]

    renamed = await scans.http.put(f"/v1/targets/{target_id}", json=body, headers=admin)
    assert renamed.status_code == 400  # a target's name is not part of its definition
    updated = await scans.http.put(
        f"/v1/targets/{target_id}",
        json={k: v for k, v in body.items() if k != "name"} | {"schedule": "6h"},
        headers=admin,
    )
    removed = await scans.http.delete(
        f"/v1/targets/{target_id}", params={"reason": "moved to another repo"}, headers=admin
    )
    again = await scans.http.post(f"/v1/targets/{target_id}/jobs", json={}, headers=admin)

    assert (updated.status_code, removed.status_code) == (200, 200)
    assert (again.status_code, again.json()["type"]) == (409, "urn:pearl:problem:conflict")
    await project_targets(scans)
    listed = await scans.http.get(
        f"/v1/projects/{project}/targets", params={"include_removed": "true"}, headers=admin
    )
    (row,) = listed.json()["items"]
    assert (row["status"], row["schedule"], row["version"]) == ("removed", "6h", 3)
    active = await scans.http.get(f"/v1/projects/{project}/targets", headers=admin)
    assert active.json()["items"] == []


# --- the scanner process -------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


async def test_run_process_kills_the_whole_process_group_when_timeout_expires(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "child.pid"
    how = Invocation(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], str(tmp_path))

    with pytest.raises(ScannerError, match=r"timed out after 0\.5s") as caught:
        await asyncio.to_thread(run_process, how, timeout=0.5, name="slow")

    assert not caught.value.permanent
    child = int(pidfile.read_text())

    async def gone() -> bool:
        return not _alive(child)

    await eventually(gone, timeout=5)


def test_run_process_reports_the_stderr_tail_when_scanner_exits_with_an_error(
    tmp_path: Path,
) -> None:
    how = Invocation(["sh", "-c", "echo 'rules file is invalid' >&2; exit 2"], str(tmp_path))

    with pytest.raises(ScannerError, match="exited with status 2: rules file is invalid"):
        run_process(how, timeout=10, name="semgrep")


def test_run_process_keeps_credentials_from_the_scanner_when_environment_has_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db/pearl")
    monkeypatch.setenv("PEARL_JWT_SECRET", "s3cret")

    out = run_process(Invocation(["env"], str(tmp_path)), timeout=10)

    assert b"secret" not in out and b"PEARL_" not in out
    assert b"PATH=" in out and b"SEMGREP_SEND_METRICS=off" in out


def test_run_scanner_fails_retryably_when_location_is_missing(tmp_path: Path) -> None:
    bandit_or_skip()

    with pytest.raises(ScannerError, match="does not exist") as caught:
        run_scanner("bandit", "source", str(tmp_path / "gone"), timeout=30)

    assert not caught.value.permanent


def test_run_scanner_refuses_permanently_when_location_is_outside_allowed_roots(
    tmp_path: Path,
) -> None:
    bandit_or_skip()
    allowed = tmp_path / "org-a"
    allowed.mkdir()
    (tmp_path / "org-b").mkdir()
    (allowed / "escape").symlink_to(tmp_path / "org-b")

    with pytest.raises(ScannerError, match="outside the allowed") as caught:
        run_scanner(
            "bandit", "source", str(allowed / "escape"), timeout=30, allowed_roots=[str(allowed)]
        )

    assert caught.value.permanent


def test_run_scanner_returns_bandit_json_when_it_finds_issues(tmp_path: Path) -> None:
    bandit_or_skip()

    raw = run_scanner("bandit", "source", str(source_tree(tmp_path)), timeout=60)

    assert b'"results"' in raw and b'"B301"' in raw and b'"./app.py"' in raw


def test_check_rules_refuses_a_rules_file_outside_the_roots_when_roots_are_set(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text("rules: []\n")
    check_rules(str(rules), [str(tmp_path)])

    with pytest.raises(ScannerError, match="outside the allowed roots") as outside:
        check_rules(str(rules), ["/srv/pearl-rules"])
    with pytest.raises(ScannerError, match="does not exist") as missing:
        check_rules(str(tmp_path / "gone.yml"))

    assert outside.value.permanent and not missing.value.permanent
