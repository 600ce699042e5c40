"""Every stored event maps onto its versioned wire contract; committed schemas match the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from contracts.commands import CreateOrg, CreateProject, IssueApiKey, RecordFinding
from contracts.docs_text import render
from contracts.events import EVENT_TYPES, HISTORICAL
from contracts.schemas import asyncapi, event_schemas, policy_schema
from contracts.targets import RegisterScanTarget, UpdateScanTarget
from domain.ingest import ScanMeta
from domain.pearl_app import PearlApp
from domain.scanners.model import NormalizedFinding, ParsedReport
from domain.wire import to_envelope
from tests.support.agents import agents_story
from tests.support.governance import SteppingClock, governance_story

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def _scenario() -> PearlApp:
    """Every kind of event the domain stores today."""
    clock = SteppingClock()
    app = PearlApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    admin = app.authenticate(app.bootstrap_admin_key())
    app.create_org(admin, CreateOrg(slug="acme", name="Acme"))
    project = UUID(app.create_project(admin, "acme", CreateProject(slug="w", name="W")).ids["id"])
    fid = UUID(
        app.record_finding(
            admin, project, RecordFinding(tool="t", rule_id="r", title="x", severity="high")
        ).ids["id"]
    )
    app.record_finding(
        admin, project, RecordFinding(tool="t", rule_id="r", title="x", severity="high")
    )
    finding = NormalizedFinding(
        tool="t",
        rule_id="r2",
        title="y",
        severity="low",
        confidence=None,
        kind="code",
        path="a.py",
        line=1,
        end_line=1,
        package=None,
        installed_version=None,
        fixed_version=None,
        cwe=("CWE-1",),
        cve=(),
        message="m",
        fingerprint="f" * 64,
    )
    report = ParsedReport(format="sarif", tool="t", tool_version="1", findings=(finding,))
    app.submit_scan(admin, project, report, ScanMeta(digest="a", size=1))
    app.submit_scan(
        admin, project, ParsedReport("sarif", "t", "1", ()), ScanMeta(digest="b", size=1)
    )
    app.submit_scan(admin, project, report, ScanMeta(digest="c", size=1))
    app.triage_finding(admin, fid, "accepted_risk", "compensating control")
    key = app.issue_api_key(admin, "acme", IssueApiKey(name="ci", roles=["service"]))
    app.mark_key_used(key.ids["key_id"])
    app.revoke_api_key(admin, "acme", key.ids["key_id"], "rotated")
    app.record_denial("acme", "service:x", "GET /v1/x", "/v1/x", "nope", "forbidden", "http")
    _targets_and_jobs(app, admin, project)
    app.record_checkpoint("acme", 3, 4, "a" * 64, "cHVibGlj", "c2ln")
    governance_story(app, admin, "acme", project, clock)
    agents_story(app, admin, "acme", project, clock)
    return app


def _targets_and_jobs(app: PearlApp, admin: Any, project: UUID) -> None:
    definition = {"kind": "source", "location": "/srv/app", "scanners": ["bandit"]}
    target = UUID(
        app.register_target(admin, project, RegisterScanTarget(name="app", **definition)).ids["id"]
    )
    app.update_target(admin, target, UpdateScanTarget(**{**definition, "branch": "dev"}))
    job = UUID(app.request_scan_job(admin, target).ids["jobs"][0]["id"])
    app.start_job(job)
    app.job_failed(job, "scanner crashed", backoff_base=0)
    app.start_job(job)
    app.job_succeeded(job, {"scan_id": "s", "counts": {"new": 1}, "digest": "d"})
    second = UUID(app.request_scan_job(admin, target).ids["jobs"][0]["id"])
    app.remove_target(admin, target)
    app.start_job(second)
    app.register_target(admin, project, RegisterScanTarget(name="app", **definition))


def test_every_stored_event_has_a_contract_whose_fields_match_when_mapped():
    app = _scenario()
    seen = set()
    for note in app.recorder.select_notifications(1, 10_000):
        env = to_envelope(app.mapper.to_domain_event(note), note.id)
        contract = EVENT_TYPES[env.type]
        payload = msgspec.convert(env.data, type=contract, strict=True)
        assert set(env.data) == set(contract.__struct_fields__), env.type
        assert msgspec.to_builtins(payload).keys() == env.data.keys()
        seen.add(env.type)
    assert seen == set(EVENT_TYPES) - HISTORICAL, set(EVENT_TYPES) - HISTORICAL - seen


def test_committed_event_schemas_and_asyncapi_match_code_when_contracts_change():
    for name, doc in (
        ("events.schema.json", event_schemas()),
        ("policy.schema.json", policy_schema()),
        ("asyncapi.json", asyncapi()),
    ):
        committed = (DOCS / name).read_text()
        assert render(doc) == committed, f"docs/schemas/{name} is stale: run `pearl schemas`"


def test_asyncapi_lists_a_channel_per_event_and_bus_command():
    doc = asyncapi()
    addresses = {c["address"] for c in doc["channels"].values()}
    assert "pearl.evt.{org}.finding.recorded" in addresses
    assert "pearl.cmd.{org}.scan.submit" in addresses
    assert doc["asyncapi"] == "3.0.0"


def _store_v1_recorded(app: PearlApp, project: UUID) -> UUID:
    """Write a Finding.Recorded exactly as v1 code stored it (no sla_days, no class_version)."""
    from eventsourcing.persistence import StoredEvent

    from domain.finding import finding_id

    fid = finding_id(project, "legacy-fp")
    state = {
        "timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00+00:00"},
        "originator_topic": "domain.finding:Finding",
        "org": "acme",
        "actor": "system:old",
        "traceparent": "",
        "project_id": str(project),
        "fingerprint": "legacy-fp",
        "tool": "bandit",
        "rule_id": "B101",
        "title": "assert used",
        "severity": "high",
        "details": {"path": "a.py", "line": 3, "message": "", "cwe": [], "cve": []},
        "scan_id": None,
        "seen_at": "2026-01-01T00:00:00+00:00",
        "sla_due": "2026-01-31T00:00:00+00:00",
    }
    stored = StoredEvent(
        originator_id=fid,
        originator_version=1,
        topic="domain.finding:Finding.Recorded",
        state=json.dumps(state).encode(),
    )
    app.recorder.insert_events([stored])
    return fid


def test_v1_finding_recorded_stored_before_v2_loads_upcast_and_maps_to_v2():
    from domain.finding import Finding

    app = PearlApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    admin = app.authenticate(app.bootstrap_admin_key())
    app.create_org(admin, CreateOrg(slug="acme", name="Acme"))
    project = UUID(app.create_project(admin, "acme", CreateProject(slug="w", name="W")).ids["id"])
    fid = _store_v1_recorded(app, project)

    finding = app.repository.get(fid)
    assert isinstance(finding, Finding)
    assert (finding.sla_days, finding.severity, finding.status) == (30, "high", "open")
    app.record_finding(
        admin,
        project,
        RecordFinding(
            tool="bandit",
            rule_id="B101",
            title="assert used",
            severity="high",
            fingerprint="legacy-fp",
        ),
    )
    assert app.repository.get(fid).version == 2  # the legacy finding was seen again, not new
    notes = [n for n in app.recorder.select_notifications(1, 100) if n.originator_id == fid]
    envelopes = [to_envelope(app.mapper.to_domain_event(n), n.id) for n in notes]
    assert [e.type for e in envelopes] == [
        "pearl.finding.recorded.v2",
        "pearl.finding.seen_again.v1",
    ]
    assert envelopes[0].data["sla_days"] == 30
    msgspec.convert(envelopes[0].data, type=EVENT_TYPES[envelopes[0].type], strict=True)
