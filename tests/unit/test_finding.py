"""The Finding aggregate's lifecycle and its reconstruction from stored events."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import Conflict, InvalidInput
from domain.finding import OPEN_STATUSES, TRIAGE_STATUSES, Finding, finding_id
from domain.pearl_app import PearlApp

ACTOR = "service:k1"
T0 = "2024-01-01T00:00:00+00:00"
T1 = "2024-01-02T00:00:00+00:00"
T2 = "2024-01-03T00:00:00+00:00"
T3 = "2024-01-04T00:00:00+00:00"


def new_finding(**overrides: Any) -> Finding:
    fields: dict[str, Any] = {
        "org": "acme",
        "project_id": "p-1",
        "fingerprint": "fp-0001",
        "tool": "semgrep",
        "rule_id": "python.sqli",
        "title": "SQL injection",
        "severity": "high",
        "details": {"path": "app/db.py", "line": 42},
        "scan_id": "scan-1",
        "seen_at": T0,
        "sla_due": None,
        "sla_days": 30,
        "actor": ACTOR,
    }
    fields.update(overrides)
    return Finding(**fields)


def event_names(finding: Finding) -> list[str]:
    return [type(e).__name__ for e in finding.collect_events()]


def test_new_finding_is_open_with_its_tool_as_only_source_when_recorded() -> None:
    finding = new_finding()

    assert finding.status == "open"
    assert finding.is_open
    assert finding.sources == ["semgrep"]
    assert finding.scan_count == 1
    assert finding.justification is None
    assert finding.id == finding_id("p-1", "fp-0001")


def test_new_finding_has_no_scan_count_when_recorded_without_a_scan() -> None:
    assert new_finding(scan_id=None).scan_count == 0


def test_finding_copies_details_when_caller_mutates_its_dict_afterwards() -> None:
    details: dict[str, Any] = {"line": 1}
    finding = new_finding(details=details)

    details["line"] = 2

    assert finding.details == {"line": 1}


def test_finding_walks_open_fixed_reopened_seen_again_when_scans_come_and_go() -> None:
    finding = new_finding()

    finding.fix(scan_id="scan-2", fixed_at=T1, actor=ACTOR)
    assert (finding.status, finding.is_open) == ("fixed", False)

    finding.observe(tool="semgrep", scan_id="scan-3", seen_at=T2, actor=ACTOR)
    assert (finding.status, finding.is_open, finding.last_seen) == ("reopened", True, T2)

    finding.observe(tool="semgrep", scan_id="scan-4", seen_at=T3, actor=ACTOR)
    assert (finding.status, finding.last_seen, finding.first_seen) == ("reopened", T3, T0)
    assert finding.scan_count == 3
    assert event_names(finding) == ["Recorded", "Fixed", "Reopened", "SeenAgain"]


def test_observe_marks_seen_again_when_finding_is_open() -> None:
    finding = new_finding()

    finding.observe(tool="semgrep", scan_id="scan-2", seen_at=T1, actor=ACTOR)

    assert finding.status == "open"
    assert event_names(finding) == ["Recorded", "SeenAgain"]


def test_reopened_finding_can_be_fixed_again_when_it_disappears() -> None:
    finding = new_finding()
    finding.fix(scan_id="s2", fixed_at=T1, actor=ACTOR)
    finding.observe(tool="semgrep", scan_id="s3", seen_at=T2, actor=ACTOR)

    finding.fix(scan_id="s4", fixed_at=T3, actor=ACTOR)

    assert finding.status == "fixed"


def test_fix_raises_conflict_when_finding_is_already_fixed() -> None:
    finding = new_finding()
    finding.fix(scan_id="s2", fixed_at=T1, actor=ACTOR)
    finding.collect_events()

    with pytest.raises(Conflict, match="fixed"):
        finding.fix(scan_id="s3", fixed_at=T2, actor=ACTOR)

    assert finding.collect_events() == []


@pytest.mark.parametrize("status", sorted(TRIAGE_STATUSES))
def test_fix_raises_conflict_when_finding_was_triaged(status: str) -> None:
    finding = new_finding()
    finding.triage(status, "reviewed", actor=ACTOR)

    with pytest.raises(Conflict, match=status):
        finding.fix(scan_id="s2", fixed_at=T1, actor=ACTOR)


@pytest.mark.parametrize("status", sorted(TRIAGE_STATUSES))
def test_triage_records_status_and_justification_when_finding_is_open(status: str) -> None:
    finding = new_finding()

    finding.triage(status, "only reachable from tests", actor="human:alice")

    assert finding.status == status
    assert finding.justification == "only reachable from tests"
    assert not finding.is_open
    assert event_names(finding) == ["Recorded", "Triaged"]


def test_triage_is_allowed_when_finding_was_reopened() -> None:
    finding = new_finding()
    finding.fix(scan_id="s2", fixed_at=T1, actor=ACTOR)
    finding.observe(tool="semgrep", scan_id="s3", seen_at=T2, actor=ACTOR)

    finding.triage("accepted_risk", "tracked in JIRA-1", actor=ACTOR)

    assert finding.status == "accepted_risk"


@pytest.mark.parametrize("status", ["open", "fixed", "reopened", "wontfix", ""])
def test_triage_raises_invalid_input_when_status_is_not_a_triage_status(status: str) -> None:
    finding = new_finding()

    with pytest.raises(InvalidInput, match="triage status"):
        finding.triage(status, "because", actor=ACTOR)

    assert finding.status == "open"


@pytest.mark.parametrize("justification", ["", "   ", "\n\t"])
def test_triage_raises_invalid_input_when_justification_is_blank(justification: str) -> None:
    finding = new_finding()

    with pytest.raises(InvalidInput, match="justification"):
        finding.triage("false_positive", justification, actor=ACTOR)

    assert finding.status == "open"


def test_triage_raises_conflict_when_finding_is_fixed() -> None:
    finding = new_finding()
    finding.fix(scan_id="s2", fixed_at=T1, actor=ACTOR)

    with pytest.raises(Conflict, match="only open findings can be triaged"):
        finding.triage("false_positive", "reviewed", actor=ACTOR)


def test_triage_raises_conflict_when_finding_is_already_triaged() -> None:
    finding = new_finding()
    finding.triage("false_positive", "reviewed", actor=ACTOR)

    with pytest.raises(Conflict):
        finding.triage("accepted_risk", "changed my mind", actor=ACTOR)

    assert (finding.status, finding.justification) == ("false_positive", "reviewed")


def test_sources_accumulate_in_order_without_duplicates_when_tools_report_it_again() -> None:
    finding = new_finding(tool="semgrep")

    for tool in ["bandit", "semgrep", "bandit", "codeql"]:
        finding.observe(tool=tool, scan_id="s", seen_at=T1, actor=ACTOR)

    assert finding.sources == ["semgrep", "bandit", "codeql"]
    assert finding.scan_count == 5


def test_open_and_triage_statuses_are_disjoint_when_compared() -> None:
    assert {"open", "reopened"} == OPEN_STATUSES
    assert not OPEN_STATUSES & TRIAGE_STATUSES
    assert "fixed" not in OPEN_STATUSES | TRIAGE_STATUSES


def test_finding_reconstructs_identically_when_saved_and_loaded(app: PearlApp) -> None:
    finding = new_finding()
    finding.observe(tool="bandit", scan_id="s2", seen_at=T1, actor=ACTOR)
    finding.fix(scan_id="s3", fixed_at=T2, actor=ACTOR)
    finding.observe(tool="codeql", scan_id="s4", seen_at=T3, actor="agent:a1")
    finding.triage("not_affected", "vendored code, not shipped", actor="human:bob")
    app.save(finding)

    loaded = app.repository.get(finding.id)

    assert isinstance(loaded, Finding)
    assert vars(loaded) == vars(finding)
    assert loaded.version == 5  # Recorded, SeenAgain, Fixed, Reopened, Triaged
    assert (loaded.status, loaded.sources) == ("not_affected", ["semgrep", "bandit", "codeql"])


def test_finding_reconstructs_from_its_own_events_when_replayed_without_a_store() -> None:
    finding = new_finding()
    finding.fix(scan_id="s2", fixed_at=T1, actor=ACTOR)
    finding.observe(tool="bandit", scan_id="s3", seen_at=T2, actor=ACTOR)
    events = finding.collect_events()

    rebuilt: Any = None
    for event in events:
        rebuilt = event.mutate(rebuilt)

    assert vars(rebuilt) == vars(finding)


def test_finding_events_carry_org_and_actor_when_triggered() -> None:
    finding = new_finding()
    finding.triage("false_positive", "reviewed", actor="human:alice")

    recorded, triaged = finding.collect_events()

    assert (recorded.org, recorded.actor) == ("acme", ACTOR)
    assert (triaged.org, triaged.actor) == ("acme", "human:alice")
