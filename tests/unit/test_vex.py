"""VEX export mapping: finding_view rows → OpenVEX 0.2.0 and CycloneDX 1.5 documents."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from contracts.vex import OPENVEX_CONTEXT, CycloneDxVex, OpenVexDocument
from domain.ingest import details_of
from domain.scanners import parse_report
from domain.vex import cyclonedx_vex, encode, openvex_document
from services.cli import vex as cli_vex
from services.cli.client import ApiProblem
from tests.support.scan_reports import CVE, GHSA, REQUESTS_PURL, grype_report, trivy_report

PROJECT = {"id": "0b7c6a43-2a44-5c1e-9d55-6f1f3f0c2a11", "org": "acme", "slug": "web"}
PRODUCT = f"urn:uuid:{PROJECT['id']}"
NOW = "2024-05-02T10:00:00+00:00"
AUTHOR = "acme security team"


def dependency_row(**overrides: Any) -> dict[str, Any]:
    """A finding_view row as the projection stores a Trivy package finding."""
    row: dict[str, Any] = {
        "id": "7d1e3c2a-0000-4000-8000-000000000001",
        "org": "acme",
        "project_id": PROJECT["id"],
        "fingerprint": "fp-requests",
        "tool": "trivy",
        "sources": ["trivy", "grype"],
        "rule_id": CVE,
        "title": "requests: Unintended leak of Proxy-Authorization header",
        "severity": "medium",
        "status": "open",
        "path": "requirements.txt",
        "line": None,
        "details": {
            "path": "requirements.txt",
            "line": None,
            "kind": "dependency",
            "cwe": ["CWE-200"],
            "cve": [CVE, GHSA],
            "package": REQUESTS_PURL,
            "installed_version": "2.25.0",
            "fixed_version": "2.31.0",
        },
        "justification": None,
        "version": 2,
    }
    row.update(overrides)
    return row


def code_row(**overrides: Any) -> dict[str, Any]:
    """A Semgrep finding: no CVE, named by its rule id."""
    row = dependency_row(
        id="7d1e3c2a-0000-4000-8000-000000000002",
        tool="semgrep",
        sources=["semgrep"],
        rule_id="python.django.security.injection.sql",
        path="app/db.py",
        line=42,
        details={"path": "app/db.py", "line": 42, "kind": "code", "cwe": ["CWE-89"], "cve": []},
        version=1,
    )
    row.update(overrides)
    return row


def openvex(*rows: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(encode(openvex_document(PROJECT, list(rows), AUTHOR, NOW)))
    return doc


def cyclonedx(*rows: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(encode(cyclonedx_vex(PROJECT, list(rows), AUTHOR, NOW)))
    return doc


def only_statement(*rows: dict[str, Any]) -> dict[str, Any]:
    statements: list[dict[str, Any]] = openvex(*rows)["statements"]
    assert len(statements) == 1
    return statements[0]


def only_analysis(*rows: dict[str, Any]) -> dict[str, Any]:
    vulns: list[dict[str, Any]] = cyclonedx(*rows)["vulnerabilities"]
    assert len(vulns) == 1
    analysis: dict[str, Any] = vulns[0]["analysis"]
    return analysis


@pytest.mark.parametrize(
    ("status", "justification", "openvex_status", "openvex_label", "cdx_state", "cdx_label"),
    [
        ("open", None, "affected", None, "in_triage", None),
        ("reopened", None, "affected", None, "in_triage", None),
        ("fixed", None, "fixed", None, "resolved", None),
        (
            "not_affected",
            "only the test suite imports it",
            "not_affected",
            "vulnerable_code_not_in_execute_path",
            "not_affected",
            "code_not_reachable",
        ),
        (
            "false_positive",
            "the vendored copy carries the fix",
            "not_affected",
            "vulnerable_code_not_present",
            "false_positive",
            None,
        ),
        ("accepted_risk", "internal tool, no proxies", "affected", None, "exploitable", None),
    ],
)
def test_status_maps_to_both_vex_vocabularies_when_finding_has_that_status(
    status: str,
    justification: str | None,
    openvex_status: str,
    openvex_label: str | None,
    cdx_state: str,
    cdx_label: str | None,
) -> None:
    row = dependency_row(status=status, justification=justification)

    statement = only_statement(row)
    analysis = only_analysis(row)

    assert (statement["status"], statement.get("justification")) == (openvex_status, openvex_label)
    assert (analysis["state"], analysis.get("justification")) == (cdx_state, cdx_label)


def test_open_finding_says_what_to_update_when_a_fixed_version_is_known() -> None:
    row = dependency_row(status="open")

    assert only_statement(row)["action_statement"] == "update requests to 2.31.0"
    assert only_analysis(row)["response"] == ["update"]


def test_open_code_finding_asks_for_triage_when_there_is_no_fixed_version() -> None:
    statement = only_statement(code_row(status="reopened"))

    assert statement["action_statement"].startswith("not triaged yet")
    assert statement["status_notes"] == "PeaRL status reopened, reported by semgrep at app/db.py:42"


def test_accepted_risk_is_affected_with_the_acceptance_as_action_when_risk_is_accepted() -> None:
    row = dependency_row(status="accepted_risk", justification="internal tool, no proxies")

    statement = only_statement(row)
    analysis = only_analysis(row)

    assert statement["action_statement"] == "risk accepted: internal tool, no proxies"
    assert "impact_statement" not in statement
    assert analysis == {
        "state": "exploitable",
        "response": ["will_not_fix"],
        "detail": "risk accepted: internal tool, no proxies",
    }


def test_not_affected_keeps_the_reasoning_as_impact_statement_when_triaged() -> None:
    row = dependency_row(status="not_affected", justification="only the test suite imports it")

    assert only_statement(row)["impact_statement"] == "only the test suite imports it"
    assert only_analysis(row)["detail"] == "only the test suite imports it"


def test_false_positive_says_so_in_the_impact_statement_when_triaged_false_positive() -> None:
    row = dependency_row(status="false_positive", justification="backported fix")

    assert only_statement(row)["impact_statement"] == "false positive: backported fix"


@pytest.mark.parametrize(
    ("text", "openvex_label", "cdx_label"),
    [
        (
            "component_not_present: requests is vendored out",
            "component_not_present",
            "code_not_present",
        ),
        (
            "inline_mitigations_already_exist - egress proxy strips the header",
            "inline_mitigations_already_exist",
            "protected_by_mitigating_control",
        ),
        (
            "protected_at_perimeter: WAF",
            "inline_mitigations_already_exist",
            "protected_at_perimeter",
        ),
        (
            "requires_configuration",
            "vulnerable_code_cannot_be_controlled_by_adversary",
            "requires_configuration",
        ),
    ],
)
def test_recorded_label_wins_over_the_default_when_justification_starts_with_one(
    text: str, openvex_label: str, cdx_label: str
) -> None:
    row = dependency_row(status="not_affected", justification=text)

    assert only_statement(row)["justification"] == openvex_label
    assert only_analysis(row)["justification"] == cdx_label


def test_label_is_not_recognised_when_it_is_only_a_prefix_of_a_word() -> None:
    row = dependency_row(status="not_affected", justification="component_not_presentable")

    assert only_statement(row)["justification"] == "vulnerable_code_not_in_execute_path"


def test_package_is_a_subcomponent_of_the_project_when_the_finding_has_a_purl() -> None:
    statement = only_statement(dependency_row())

    assert statement["products"] == [{"@id": PRODUCT, "subcomponents": [{"@id": REQUESTS_PURL}]}]
    assert statement["vulnerability"] == {"name": CVE, "aliases": [GHSA]}
    assert statement["@id"] == "urn:uuid:7d1e3c2a-0000-4000-8000-000000000001"


def test_grype_ghsa_rule_id_becomes_an_alias_when_a_cve_names_the_vulnerability() -> None:
    row = dependency_row(
        tool="grype", rule_id=GHSA.lower(), details={**dependency_row()["details"], "cve": [CVE]}
    )

    assert only_statement(row)["vulnerability"] == {"name": CVE, "aliases": [GHSA]}


def test_code_finding_is_named_by_its_rule_id_when_it_carries_no_cve() -> None:
    statement = only_statement(code_row())
    vuln = cyclonedx(code_row())["vulnerabilities"][0]

    assert statement["vulnerability"] == {"name": "python.django.security.injection.sql"}
    assert statement["products"] == [{"@id": PRODUCT}]
    assert vuln["source"] == {"name": "semgrep"}
    assert vuln["affects"] == [{"ref": PRODUCT}]
    assert vuln["cwes"] == [89]


def test_hand_recorded_finding_is_exported_as_code_when_it_has_no_kind() -> None:
    row = code_row(details={"path": "app/db.py", "line": 42, "cwe": [], "cve": ["cve-2021-44228"]})

    assert only_statement(row)["vulnerability"] == {"name": "CVE-2021-44228"}


@pytest.mark.parametrize("kind", ["secret", "config"])
def test_finding_is_left_out_when_it_is_a_secret_or_misconfiguration(kind: str) -> None:
    row = code_row(details={"path": "k8s/pod.yaml", "line": 3, "kind": kind, "cve": []})

    assert openvex(row)["statements"] == []
    assert cyclonedx(row)["vulnerabilities"] == []


def test_export_is_byte_identical_when_the_same_rows_arrive_in_another_order() -> None:
    rows = [
        dependency_row(status="not_affected", justification="not reachable"),
        code_row(),
        code_row(id="7d1e3c2a-0000-4000-8000-000000000000", path="app/a.py"),
    ]

    first = encode(openvex_document(PROJECT, rows, AUTHOR, NOW))
    again = encode(openvex_document(PROJECT, list(reversed(rows)), AUTHOR, NOW))
    bom_first = encode(cyclonedx_vex(PROJECT, rows, AUTHOR, NOW))
    bom_again = encode(cyclonedx_vex(PROJECT, list(reversed(rows)), AUTHOR, NOW))

    assert first == again
    assert bom_first == bom_again
    names = [s["vulnerability"]["name"] for s in json.loads(first)["statements"]]
    assert names == sorted(names)


def test_document_version_grows_when_an_included_finding_changes() -> None:
    before = openvex(dependency_row(version=2), code_row(version=1))
    after = openvex(dependency_row(version=3, status="not_affected", justification="x"), code_row())

    assert after["version"] > before["version"]
    assert after["@id"] == before["@id"]


def test_openvex_document_uses_the_spec_field_names_when_encoded() -> None:
    raw = encode(openvex_document(PROJECT, [dependency_row()], AUTHOR, NOW))
    doc = json.loads(raw)

    assert list(doc) == [
        "@context",
        "@id",
        "author",
        "timestamp",
        "version",
        "tooling",
        "statements",
    ]
    assert doc["@context"] == OPENVEX_CONTEXT == "https://openvex.dev/ns/v0.2.0"
    assert doc["@id"] == f"urn:pearl:vex:{PROJECT['id']}"
    assert (doc["author"], doc["timestamp"]) == (AUTHOR, NOW)
    assert msgspec.json.decode(raw, type=OpenVexDocument) == openvex_document(
        PROJECT, [dependency_row()], AUTHOR, NOW
    )


def test_cyclonedx_document_uses_the_spec_field_names_when_encoded() -> None:
    raw = encode(cyclonedx_vex(PROJECT, [dependency_row()], AUTHOR, NOW))
    doc = json.loads(raw)

    assert (doc["bomFormat"], doc["specVersion"], doc["version"]) == ("CycloneDX", "1.5", 2)
    assert doc["serialNumber"].startswith("urn:uuid:")
    assert doc["metadata"] == {
        "timestamp": NOW,
        "authors": [{"name": AUTHOR}],
        "component": {"type": "application", "bom-ref": PRODUCT, "name": "web"},
    }
    assert doc["components"] == [
        {
            "type": "library",
            "bom-ref": REQUESTS_PURL,
            "name": "requests",
            "version": "2.25.0",
            "purl": REQUESTS_PURL,
        }
    ]
    vuln = doc["vulnerabilities"][0]
    assert vuln["bom-ref"] == "urn:uuid:7d1e3c2a-0000-4000-8000-000000000001"
    assert vuln["source"] == {"name": "NVD", "url": f"https://nvd.nist.gov/vuln/detail/{CVE}"}
    assert vuln["references"] == [
        {
            "id": GHSA,
            "source": {"name": "GitHub Advisories", "url": f"https://github.com/advisories/{GHSA}"},
        }
    ]
    assert vuln["affects"] == [{"ref": REQUESTS_PURL}]
    assert msgspec.json.decode(raw, type=CycloneDxVex).serial_number == doc["serialNumber"]


def test_parsed_trivy_and_grype_results_map_to_the_same_statement_when_they_share_a_cve() -> None:
    """The domain reads what the parsers store (details_of), whichever tool recorded it first."""
    trivy = parse_report(trivy_report()).findings[0]
    grype = parse_report(grype_report()).findings[0]

    def row_of(tool: str, rule_id: str, details: dict[str, Any]) -> dict[str, Any]:
        return dependency_row(tool=tool, sources=[tool], rule_id=rule_id, details=details)

    from_trivy = only_statement(row_of("trivy", trivy.rule_id, details_of(trivy)))
    from_grype = only_statement(row_of("grype", grype.rule_id, details_of(grype)))

    assert trivy.fingerprint == grype.fingerprint
    assert (
        from_trivy["vulnerability"]
        == from_grype["vulnerability"]
        == {
            "name": CVE,
            "aliases": [GHSA],
        }
    )
    assert from_trivy["products"] == from_grype["products"]


def cli_args(tmp_path: Path, **overrides: Any) -> argparse.Namespace:
    values: dict[str, Any] = {
        "project": PROJECT["id"],
        "format": "cyclonedx",
        "author": None,
        "output": str(tmp_path / "vex.json"),
        "home": tmp_path,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def fake_api(
    monkeypatch: pytest.MonkeyPatch, status: int, body: bytes, seen: list[httpx.Request]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})

    def fake_client(home: Path, timeout: float = 300.0) -> httpx.Client:
        return httpx.Client(base_url="http://pearl.test", transport=httpx.MockTransport(handler))

    monkeypatch.setattr(cli_vex, "client", fake_client)


def test_cli_writes_the_api_document_to_the_output_file_when_export_succeeds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    body = encode(cyclonedx_vex(PROJECT, [dependency_row()], AUTHOR, NOW))
    seen: list[httpx.Request] = []
    fake_api(monkeypatch, 200, body, seen)

    code = cli_vex.cmd_vex_export(cli_args(tmp_path, author="acme psirt"))

    assert code == 0
    assert (tmp_path / "vex.json").read_bytes() == body + b"\n"
    assert seen[0].url.path == f"/v1/projects/{PROJECT['id']}/vex"
    assert dict(seen[0].url.params) == {"format": "cyclonedx", "author": "acme psirt"}


def test_cli_raises_the_api_problem_when_the_project_is_not_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    problem = b'{"type": "urn:pearl:problem:not-found", "detail": "project x not found"}'
    fake_api(monkeypatch, 404, problem, [])

    with pytest.raises(ApiProblem, match="404: project x not found"):
        cli_vex.cmd_vex_export(cli_args(tmp_path))

    assert not (tmp_path / "vex.json").exists()
