"""Hand-written reports for every supported format: normalized fields, fingerprints, errors."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pytest

from domain.errors import ReportError
from domain.scanners import FORMATS, NormalizedFinding, ParsedReport, detect_format, parse_report

SEVERITIES = {"critical", "high", "medium", "low", "info"}


def parse(document: object, tool: str | None = None) -> ParsedReport:
    """Serialise a report as its tool would and parse it."""
    return parse_report(json.dumps(document).encode(), tool=tool)


def only(report: ParsedReport) -> NormalizedFinding:
    """Return the single finding of a report."""
    assert len(report.findings) == 1, report.findings
    return report.findings[0]


# --- report builders -------------------------------------------------------------------------


def semgrep_result(line: int, *, path: str = "./app/views.py", **extra: Any) -> dict[str, Any]:
    """One Semgrep OSS result as the CLI prints it (fingerprint and lines need a login)."""
    return {
        "check_id": "python.django.xss",
        "path": path,
        "start": {"line": line, "col": 5, "offset": 100},
        "end": {"line": line, "col": 30, "offset": 125},
        "extra": {
            "message": "Unescaped user input reaches the template.",
            "metadata": {"cwe": ["CWE-79: Cross-site Scripting"], "confidence": "MEDIUM"},
            "severity": "WARNING",
            "fingerprint": "requires login",
            "lines": "requires login",
            **extra,
        },
    }


def semgrep(*results: dict[str, Any]) -> dict[str, Any]:
    """A Semgrep JSON report."""
    return {"version": "1.90.0", "results": list(results), "errors": [], "paths": {"scanned": []}}


def sarif_result(line: int, snippet: str = "eval(request.args['q'])") -> dict[str, Any]:
    """One SARIF result at a line with a snippet."""
    return {
        "ruleId": "py/code-injection",
        "message": {"text": "Code injection from user input."},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": "./src/app.py"},
                    "region": {"startLine": line, "snippet": {"text": snippet}},
                }
            }
        ],
    }


def sarif(*results: dict[str, Any], version: str = "2.1.0") -> dict[str, Any]:
    """A one-run SARIF log whose rule gives CWE tags and a CVSS-like security-severity."""
    rule = {
        "id": "py/code-injection",
        "shortDescription": {"text": "Code injection"},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", "external/cwe/cwe-094"], "security-severity": "9.3"},
    }
    return {
        "version": version,
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [
            {"tool": {"driver": {"name": "CodeQL", "version": "2.15.0", "rules": [rule]}}}
            | {"results": list(results)}
        ],
    }


def bandit_result(
    line: int, *, code_line: str = "subprocess.call(cmd, shell=True)"
) -> dict[str, Any]:
    """One Bandit result with its numbered three-line code window."""
    return {
        "code": f"{line - 1} def run(cmd):\n{line}     {code_line}\n{line + 1} \n",
        "col_offset": 4,
        "filename": "./tools/run.py",
        "issue_confidence": "HIGH",
        "issue_cwe": {"id": 78, "link": "https://cwe.mitre.org/data/definitions/78.html"},
        "issue_severity": "HIGH",
        "issue_text": "subprocess call with shell=True identified, security issue.",
        "line_number": line,
        "line_range": [line],
        "more_info": "https://bandit.readthedocs.io/en/1.7.9/plugins/b602.html",
        "test_id": "B602",
        "test_name": "subprocess_popen_with_shell_equals_true",
    }


def bandit(*results: dict[str, Any]) -> dict[str, Any]:
    """A Bandit JSON report."""
    return {
        "errors": [],
        "generated_at": "2024-01-01T00:00:00Z",
        "metrics": {},
        "results": [*results],
    }


TRIVY = {
    "SchemaVersion": 2,
    "ArtifactName": ".",
    "ArtifactType": "filesystem",
    "Results": [
        {
            "Target": "requirements.txt",
            "Class": "lang-pkgs",
            "Type": "pip",
            "Vulnerabilities": [
                {
                    "VulnerabilityID": "CVE-2019-19844",
                    "PkgName": "django",
                    "InstalledVersion": "2.2.0",
                    "FixedVersion": "2.2.9",
                    "Severity": "CRITICAL",
                    "CweIDs": ["CWE-640"],
                    "Title": "Django: crafted email enables account takeover",
                    "Description": "Django before 2.2.9 allows account takeover.",
                },
                {
                    "VulnerabilityID": "CVE-2023-0001",
                    "PkgName": "requests",
                    "PkgIdentifier": {"PURL": "pkg:pypi/requests@2.0.0"},
                    "InstalledVersion": "2.0.0",
                    "Severity": "UNKNOWN",
                    "CVSS": {"nvd": {"V3Score": 7.5}},
                },
            ],
        },
        {
            "Target": "/deploy/Dockerfile",
            "Class": "config",
            "Type": "dockerfile",
            "Misconfigurations": [
                {
                    "ID": "DS002",
                    "Title": "Image user should not be 'root'",
                    "Message": "Specify at least 1 USER command in Dockerfile",
                    "Severity": "HIGH",
                    "Status": "FAIL",
                    "CauseMetadata": {
                        "StartLine": 3,
                        "EndLine": 3,
                        "Code": {"Lines": [{"Number": 3, "Content": "USER root", "IsCause": True}]},
                    },
                },
                {"ID": "DS001", "Title": "Tag is pinned", "Severity": "MEDIUM", "Status": "PASS"},
            ],
        },
        {
            "Target": "./config/settings.py",
            "Class": "secret",
            "Secrets": [
                {
                    "RuleID": "aws-access-key-id",
                    "Category": "AWS",
                    "Severity": "CRITICAL",
                    "Title": "AWS Access Key ID",
                    "StartLine": 12,
                    "EndLine": 12,
                    "Match": "AWS_KEY = ********************",
                }
            ],
        },
    ],
}

GRYPE = {
    "matches": [
        {
            "vulnerability": {
                "id": "GHSA-vfq6-hq5r-27r6",
                "severity": "Critical",
                "description": "Account takeover in Django password reset.",
                "fix": {"versions": ["2.2.9"], "state": "fixed"},
                "cvss": [],
            },
            "relatedVulnerabilities": [{"id": "CVE-2019-19844", "severity": "Critical"}],
            "artifact": {
                "name": "django",
                "version": "2.2.0",
                "type": "python",
                "locations": [{"path": "/requirements.txt"}],
                "purl": "pkg:pypi/django@2.2.0",
            },
        },
        {
            "vulnerability": {
                "id": "CVE-2022-0002",
                "severity": "Negligible",
                "fix": {"versions": [], "state": "not-fixed"},
            },
            "artifact": {"name": "libc6", "version": "2.31-13", "type": "deb", "locations": []},
        },
    ],
    "source": {"type": "directory", "target": "."},
    "descriptor": {"name": "grype", "version": "0.74.0"},
}

GITLEAKS = [
    {
        "Description": "AWS Access Key",
        "StartLine": 7,
        "EndLine": 7,
        "StartColumn": 10,
        "EndColumn": 30,
        "Match": "aws_key = AKIAIOSFODNN7EXAMPLE",
        "Secret": "AKIAIOSFODNN7EXAMPLE",
        "File": "./deploy/env.sh",
        "Commit": "abc123",
        "RuleID": "aws-access-token",
        "Fingerprint": "abc123:deploy/env.sh:aws-access-token:7",
    }
]

SNYK_VULN = {
    "id": "SNYK-PYTHON-DJANGO-1066259",
    "title": "SQL Injection",
    "severity": "high",
    "cvssScore": 8.1,
    "identifiers": {"CVE": ["CVE-2021-3281"], "CWE": ["CWE-89"], "GHSA": []},
    "packageName": "django",
    "version": "2.2.0",
    "fixedIn": ["2.2.18", "3.0.12"],
    "from": ["app@0.0.0", "django@2.2.0"],
}
SNYK = {
    "ok": False,
    "vulnerabilities": [SNYK_VULN, SNYK_VULN | {"from": ["app@0.0.0", "x@1", "django@2.2.0"]}],
    "dependencyCount": 12,
    "packageManager": "pip",
    "projectName": "app",
    "displayTargetFile": "requirements.txt",
}

PIP_AUDIT = {
    "dependencies": [
        {
            "name": "Flask_Cors",
            "version": "3.0.8",
            "vulns": [
                {
                    "id": "PYSEC-2020-43",
                    "fix_versions": ["3.0.9"],
                    "aliases": ["CVE-2020-25032", "GHSA-xc3p-ff3m-f46v"],
                    "description": "Directory traversal in flask-cors.",
                }
            ],
        },
        {"name": "click", "version": "8.1.7", "vulns": []},
    ],
    "fixes": [],
}

NPM_V2 = {
    "auditReportVersion": 2,
    "vulnerabilities": {
        "lodash": {
            "name": "lodash",
            "severity": "high",
            "isDirect": True,
            "via": [
                {
                    "source": 1094500,
                    "name": "lodash",
                    "dependency": "lodash",
                    "title": "Prototype Pollution in lodash",
                    "url": "https://github.com/advisories/GHSA-p6mc-m468-83gw",
                    "severity": "moderate",
                    "cwe": ["CWE-1321"],
                    "cvss": {"score": 7.4},
                    "range": "<4.17.19",
                }
            ],
            "effects": [],
            "range": "<4.17.19",
            "nodes": ["node_modules/lodash"],
            "fixAvailable": {"name": "lodash", "version": "4.17.21", "isSemVerMajor": False},
        },
        "app-utils": {
            "name": "app-utils",
            "severity": "high",
            "via": ["lodash"],
            "nodes": ["node_modules/app-utils"],
            "fixAvailable": True,
        },
    },
    "metadata": {"vulnerabilities": {"high": 2}},
}

NPM_V1 = {
    "actions": [],
    "advisories": {
        "1065": {
            "id": 1065,
            "title": "Prototype Pollution",
            "module_name": "lodash",
            "severity": "low",
            "cwe": "CWE-471",
            "cves": ["CVE-2019-10744"],
            "github_advisory_id": "GHSA-jf85-cpcp-j695",
            "patched_versions": ">=4.17.12",
            "findings": [{"version": "4.17.11", "paths": ["lodash"]}],
            "overview": "Versions of lodash before 4.17.12 are vulnerable.",
        }
    },
    "muted": [],
    "metadata": {},
}

CYCLONEDX = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.5",
    "metadata": {"tools": {"components": [{"name": "Trivy", "version": "0.50.0"}]}},
    "components": [
        {
            "bom-ref": "comp-1",
            "type": "library",
            "name": "django",
            "version": "2.2.0",
            "purl": "pkg:pypi/django@2.2.0",
        }
    ],
    "vulnerabilities": [
        {
            "id": "CVE-2019-19844",
            "ratings": [{"score": 9.8, "severity": "critical", "method": "CVSSv31"}],
            "cwes": [640],
            "description": "Account takeover via password reset.",
            "affects": [
                {
                    "ref": "comp-1",
                    "versions": [
                        {"version": "2.2.0", "status": "affected"},
                        {"version": "2.2.9", "status": "unaffected"},
                    ],
                }
            ],
        },
        {
            "id": "CVE-2020-0001",
            "ratings": [{"score": 5.0}],
            "affects": [{"ref": "pkg:npm/left-pad@1.0.0"}],
        },
        {
            "id": "CVE-2021-0002",
            "ratings": [{"severity": "high"}],
            "analysis": {"state": "not_affected"},
            "affects": [{"ref": "comp-1"}],
        },
    ],
}

CHECKOV_LIST = [
    {
        "check_type": "kubernetes",
        "results": {
            "passed_checks": [{"check_id": "CKV_K8S_1", "file_path": "/k8s/ok.yaml"}],
            "failed_checks": [
                {
                    "check_id": "CKV_K8S_20",
                    "check_name": "Containers should not run with allowPrivilegeEscalation",
                    "file_path": "/k8s/deploy.yaml",
                    "file_line_range": [1, 30],
                    "resource": "Deployment.default.web",
                    "severity": None,
                },
                {
                    "check_id": "CKV_K8S_20",
                    "check_name": "Containers should not run with allowPrivilegeEscalation",
                    "file_path": "/k8s/deploy.yaml",
                    "file_line_range": [32, 60],
                    "resource": "Deployment.default.worker",
                    "severity": "HIGH",
                },
            ],
        },
        "summary": {"passed": 1, "failed": 2, "checkov_version": "3.2.0"},
    },
    {
        "check_type": "secrets",
        "results": {
            "failed_checks": [
                {
                    "check_id": "CKV_SECRET_2",
                    "check_name": "AWS Access Key",
                    "file_path": "/.env",
                    "file_line_range": [3, 4],
                    "resource": "25910f981e85ca04baf359199dd0bd4a3ae738b6",
                    "severity": None,
                }
            ]
        },
        "summary": {"passed": 0, "failed": 1, "checkov_version": "3.2.0"},
    },
]


# --- detection -------------------------------------------------------------------------------

DOCUMENTS: dict[str, object] = {
    "sarif": sarif(sarif_result(3)),
    "semgrep": semgrep(semgrep_result(3)),
    "bandit": bandit(bandit_result(3)),
    "trivy": TRIVY,
    "grype": GRYPE,
    "checkov": CHECKOV_LIST,
    "gitleaks": GITLEAKS,
    "snyk": SNYK,
    "pip_audit": PIP_AUDIT,
    "npm_audit": NPM_V2,
    "cyclonedx": CYCLONEDX,
}


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_format_is_detected_when_reading_its_head(name: str) -> None:
    head = json.dumps(DOCUMENTS[name]).encode()[: 64 * 1024]
    assert detect_format(head) == name
    assert parse(DOCUMENTS[name]).format == name


def test_every_format_is_registered_when_importing_the_package() -> None:
    assert set(DOCUMENTS) == set(FORMATS)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_findings_are_normalized_when_parsing_any_format(name: str) -> None:
    report = parse(DOCUMENTS[name])
    assert report.findings
    for finding in report.findings:
        assert finding.severity in SEVERITIES
        assert finding.kind in {"code", "dependency", "secret", "config"}
        assert len(finding.fingerprint) == 64 and int(finding.fingerprint, 16) >= 0
        assert not (finding.path or "x").startswith(("/", "./"))
        assert json.loads(json.dumps(finding.to_dict())) == finding.to_dict()


def test_finding_is_frozen_and_slotted_when_created() -> None:
    finding = only(parse(semgrep(semgrep_result(3))))
    assert not hasattr(finding, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.severity = "low"  # type: ignore[misc]
    assert finding.to_dict()["cwe"] == ["CWE-79"]


# --- SARIF -----------------------------------------------------------------------------------


def test_sarif_fields_are_normalized_when_rule_has_security_severity() -> None:
    report = parse(sarif(sarif_result(12)))
    finding = only(report)
    assert (report.format, report.tool, report.tool_version) == ("sarif", "codeql", "2.15.0")
    assert finding.tool == "codeql"
    assert finding.rule_id == "py/code-injection"
    assert finding.title == "Code injection"
    assert finding.severity == "critical"
    assert finding.kind == "code"
    assert finding.path == "src/app.py"
    assert (finding.line, finding.end_line) == (12, 12)
    assert finding.cwe == ("CWE-94",)


@pytest.mark.parametrize(
    ("level", "expected"), [("error", "high"), ("warning", "medium"), ("note", "low")]
)
def test_sarif_level_maps_to_severity_when_no_score_is_given(level: str, expected: str) -> None:
    document = sarif(sarif_result(1) | {"level": level})
    del document["runs"][0]["tool"]["driver"]["rules"][0]["properties"]["security-severity"]
    assert only(parse(document)).severity == expected


def test_sarif_results_take_their_run_tool_when_log_has_several_runs() -> None:
    run_a = {"results": [sarif_result(1)], "tool": {"driver": {"name": "Semgrep OSS"}}}
    run_b = {"tool": {"driver": {"name": "Bandit"}}, "results": [sarif_result(2), sarif_result(3)]}
    report = parse({"version": "2.1.0", "runs": [run_a, run_b]})
    assert [f.tool for f in report.findings] == ["semgrep", "bandit", "bandit"]


def test_sarif_rules_apply_when_they_follow_the_results_in_the_file() -> None:
    rule = {
        "id": "R1",
        "defaultConfiguration": {"level": "note"},
        "properties": {"tags": ["CWE-22"]},
    }
    text = (
        '{"runs": [{"results": [{"ruleId": "R1", "message": {"text": "m"}, "locations": []}], '
        f'"tool": {{"driver": {{"name": "Tool", "rules": [{json.dumps(rule)}]}}}}}}], '
        '"version": "2.1.0"}'
    )
    finding = only(parse_report(text.encode()))
    assert (finding.severity, finding.cwe, finding.tool) == ("low", ("CWE-22",), "tool")


def test_sarif_uses_partial_fingerprints_when_producer_supplies_them() -> None:
    first = sarif_result(10) | {"partialFingerprints": {"primaryLocationLineHash": "abc:1"}}
    moved = sarif_result(90, snippet="changed") | {
        "partialFingerprints": {"primaryLocationLineHash": "abc:1"}
    }
    assert only(parse(sarif(first))).fingerprint == only(parse(sarif(moved))).fingerprint


def test_sarif_pass_results_are_skipped_when_kind_is_pass() -> None:
    assert parse(sarif(sarif_result(1) | {"kind": "pass"})).findings == ()


def test_sarif_dependency_fields_are_read_when_trivy_writes_the_message() -> None:
    result = {
        "ruleId": "CVE-2019-19844",
        "message": {
            "text": "Package: django\nInstalled Version: 2.2.0\nVulnerability CVE-2019-19844\n"
            "Severity: CRITICAL\nFixed Version: 2.2.9"
        },
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": "requirements.txt"}}}],
    }
    run = {"tool": {"driver": {"name": "Trivy"}}, "results": [result]}
    finding = only(parse({"version": "2.1.0", "runs": [run]}))
    assert finding.kind == "dependency"
    assert (finding.package, finding.installed_version) == ("django", "2.2.0")
    assert finding.fixed_version == "2.2.9"
    assert finding.cve == ("CVE-2019-19844",)
    assert finding.fingerprint == parse(TRIVY).findings[0].fingerprint


# --- Semgrep ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "expected"), [("ERROR", "high"), ("WARNING", "medium"), ("INFO", "low")]
)
def test_semgrep_severity_is_mapped_when_parsing(severity: str, expected: str) -> None:
    finding = only(parse(semgrep(semgrep_result(3, severity=severity))))
    assert finding.severity == expected


def test_semgrep_fields_are_normalized_when_parsing() -> None:
    report = parse(semgrep(semgrep_result(3)))
    finding = only(report)
    assert (report.tool, report.tool_version) == ("semgrep", "1.90.0")
    assert finding.path == "app/views.py"
    assert finding.rule_id == "python.django.xss"
    assert finding.cwe == ("CWE-79",)
    assert finding.confidence == "medium"
    assert (finding.line, finding.end_line) == (3, 3)


def test_semgrep_fingerprint_is_used_when_it_is_not_the_login_placeholder() -> None:
    a = semgrep_result(3, fingerprint="f00d", lines="x = 1")
    b = semgrep_result(50, fingerprint="f00d", lines="y = 2")
    c = semgrep_result(3, fingerprint="beef", lines="x = 1")
    fingerprints = [only(parse(semgrep(r))).fingerprint for r in (a, b, c)]
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]


# --- Bandit ----------------------------------------------------------------------------------


def test_bandit_fields_are_normalized_when_parsing() -> None:
    report = parse(bandit(bandit_result(5)))
    finding = only(report)
    assert (report.tool, report.tool_version) == ("bandit", "1.7.9")
    assert (finding.rule_id, finding.severity, finding.confidence) == ("B602", "high", "high")
    assert finding.path == "tools/run.py"
    assert finding.cwe == ("CWE-78",)
    assert finding.kind == "code"


@pytest.mark.parametrize(
    ("severity", "expected"), [("HIGH", "high"), ("MEDIUM", "medium"), ("LOW", "low")]
)
def test_bandit_severity_is_mapped_when_parsing(severity: str, expected: str) -> None:
    result = bandit_result(5) | {"issue_severity": severity}
    assert only(parse(bandit(result))).severity == expected


# --- Checkov ---------------------------------------------------------------------------------


def test_checkov_failed_checks_only_are_findings_when_report_is_a_list() -> None:
    report = parse(CHECKOV_LIST)
    assert (report.tool, report.tool_version) == ("checkov", "3.2.0")
    rows = [(f.rule_id, f.path, f.line, f.severity, f.kind) for f in report.findings]
    assert rows == [
        ("CKV_K8S_20", "k8s/deploy.yaml", 1, "medium", "config"),
        ("CKV_K8S_20", "k8s/deploy.yaml", 32, "high", "config"),
        ("CKV_SECRET_2", ".env", 3, "medium", "secret"),
    ]
    assert len({f.fingerprint for f in report.findings}) == 3


def test_checkov_single_report_is_parsed_when_it_is_a_dict() -> None:
    report = parse(CHECKOV_LIST[0])
    assert [f.line for f in report.findings] == [1, 32]


def test_checkov_summary_yields_no_findings_when_nothing_failed() -> None:
    report = parse({"passed": 3, "failed": 0, "skipped": 0, "checkov_version": "3.2.0"})
    assert (report.format, report.findings) == ("checkov", ())


# --- Trivy and Grype -------------------------------------------------------------------------


def test_trivy_vulnerability_fields_are_normalized_when_parsing() -> None:
    report = parse(TRIVY)
    django, requests = report.findings[:2]
    assert django.package == "pkg:pypi/django@2.2.0"
    assert (django.installed_version, django.fixed_version) == ("2.2.0", "2.2.9")
    assert (django.severity, django.kind, django.path) == (
        "critical",
        "dependency",
        "requirements.txt",
    )
    assert (django.cve, django.cwe) == (("CVE-2019-19844",), ("CWE-640",))
    assert requests.package == "pkg:pypi/requests@2.0.0"
    assert requests.severity == "high"


def test_trivy_misconfigurations_and_secrets_are_read_when_present() -> None:
    findings = parse(TRIVY).findings[2:]
    assert [(f.rule_id, f.kind, f.path, f.line) for f in findings] == [
        ("DS002", "config", "deploy/Dockerfile", 3),
        ("aws-access-key-id", "secret", "config/settings.py", 12),
    ]
    assert findings[1].severity == "critical"


def test_grype_fields_are_normalized_when_parsing() -> None:
    report = parse(GRYPE)
    django, libc = report.findings
    assert (report.tool, report.tool_version) == ("grype", "0.74.0")
    assert (django.package, django.fixed_version) == ("pkg:pypi/django@2.2.0", "2.2.9")
    assert django.cve == ("CVE-2019-19844", "GHSA-vfq6-hq5r-27r6")
    assert (django.severity, django.path) == ("critical", "requirements.txt")
    assert (libc.severity, libc.fixed_version, libc.package) == (
        "info",
        None,
        "pkg:deb/libc6@2.31-13",
    )


def test_fingerprints_match_when_trivy_and_grype_report_the_same_cve_and_package() -> None:
    trivy = parse(TRIVY).findings[0]
    grype = parse(GRYPE).findings[0]
    assert (trivy.tool, grype.tool) == ("trivy", "grype")
    assert trivy.fingerprint == grype.fingerprint
    assert parse(CYCLONEDX).findings[0].fingerprint == trivy.fingerprint


# --- secrets and package audits --------------------------------------------------------------


def test_gitleaks_leak_is_a_secret_finding_when_parsing() -> None:
    finding = only(parse(GITLEAKS))
    assert (finding.tool, finding.kind, finding.severity) == ("gitleaks", "secret", "high")
    assert (finding.rule_id, finding.path, finding.line) == ("aws-access-token", "deploy/env.sh", 7)
    assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps(finding.to_dict())


def test_gitleaks_fingerprint_survives_when_the_secret_moves_down_the_file() -> None:
    moved = [GITLEAKS[0] | {"StartLine": 40, "EndLine": 40, "Fingerprint": "abc123:x:y:40"}]
    assert only(parse(GITLEAKS)).fingerprint == only(parse(moved)).fingerprint


def test_snyk_fields_are_normalized_and_paths_deduplicated_when_parsing() -> None:
    finding = only(parse(SNYK))
    assert (finding.tool, finding.rule_id, finding.severity) == (
        "snyk",
        "SNYK-PYTHON-DJANGO-1066259",
        "high",
    )
    assert (finding.package, finding.fixed_version) == ("pkg:pypi/django@2.2.0", "2.2.18, 3.0.12")
    assert (finding.cve, finding.cwe, finding.path) == (
        ("CVE-2021-3281",),
        ("CWE-89",),
        "requirements.txt",
    )


def test_pip_audit_fields_are_normalized_when_parsing() -> None:
    report = parse(PIP_AUDIT)
    finding = only(report)
    assert (report.format, finding.tool, finding.severity) == ("pip_audit", "pip-audit", "medium")
    assert finding.package == "pkg:pypi/flask-cors@3.0.8"
    assert (finding.installed_version, finding.fixed_version) == ("3.0.8", "3.0.9")
    assert finding.cve == ("CVE-2020-25032", "GHSA-xc3p-ff3m-f46v")
    assert finding.rule_id == "PYSEC-2020-43"


def test_npm_audit_v2_advisories_are_findings_when_parsing() -> None:
    finding = only(parse(NPM_V2))
    assert (finding.tool, finding.rule_id, finding.severity) == (
        "npm-audit",
        "GHSA-p6mc-m468-83gw",
        "medium",
    )
    assert (finding.package, finding.fixed_version) == ("pkg:npm/lodash", "4.17.21")
    assert (finding.cve, finding.cwe) == (("GHSA-p6mc-m468-83gw",), ("CWE-1321",))
    assert finding.path == "node_modules/lodash"


def test_npm_audit_v1_advisories_are_findings_when_parsing() -> None:
    finding = only(parse(NPM_V1))
    assert (finding.rule_id, finding.severity) == ("GHSA-jf85-cpcp-j695", "low")
    assert (finding.package, finding.installed_version) == ("pkg:npm/lodash@4.17.11", "4.17.11")
    assert finding.fixed_version == "4.17.12"
    assert finding.cve == ("CVE-2019-10744", "GHSA-jf85-cpcp-j695")
    assert finding.cwe == ("CWE-471",)


def test_cyclonedx_vulnerabilities_are_findings_when_parsing() -> None:
    report = parse(CYCLONEDX)
    django, left_pad = report.findings
    assert (report.tool, report.tool_version) == ("trivy", "0.50.0")
    assert (django.package, django.fixed_version) == ("pkg:pypi/django@2.2.0", "2.2.9")
    assert (django.severity, django.cwe, django.cve) == (
        "critical",
        ("CWE-640",),
        ("CVE-2019-19844",),
    )
    assert (left_pad.package, left_pad.installed_version) == ("pkg:npm/left-pad@1.0.0", "1.0.0")
    assert left_pad.severity == "medium"


# --- fingerprints and duplicates -------------------------------------------------------------


def test_fingerprint_survives_when_code_moves_from_line_10_to_line_40() -> None:
    for build, result in (
        (semgrep, semgrep_result),
        (sarif, sarif_result),
        (bandit, bandit_result),
    ):
        before = only(parse(build(result(10))))
        after = only(parse(build(result(40))))
        assert (before.line, after.line) == (10, 40)
        assert before.fingerprint == after.fingerprint, build.__name__


def test_fingerprint_changes_when_the_flagged_code_changes() -> None:
    before = only(parse(bandit(bandit_result(10))))
    after = only(parse(bandit(bandit_result(10, code_line="os.system(cmd)"))))
    assert before.fingerprint != after.fingerprint


def test_fingerprints_differ_when_tools_report_the_same_rule_and_snippet() -> None:
    document = sarif(sarif_result(10))
    other = json.loads(json.dumps(document))
    other["runs"][0]["tool"]["driver"]["name"] = "OtherTool"
    assert only(parse(document)).fingerprint != only(parse(other)).fingerprint


def test_duplicates_count_once_when_a_report_repeats_a_result() -> None:
    assert len(parse(semgrep(semgrep_result(10), semgrep_result(10))).findings) == 1
    assert len(parse(sarif(sarif_result(10), sarif_result(10))).findings) == 1
    assert len(parse(bandit(bandit_result(10), bandit_result(10))).findings) == 1


def test_fingerprints_are_distinct_when_one_snippet_matches_at_several_lines() -> None:
    report = parse(semgrep(semgrep_result(30), semgrep_result(10), semgrep_result(20)))
    assert len(report.findings) == 3
    assert len({f.fingerprint for f in report.findings}) == 3


def test_occurrence_fingerprints_are_stable_when_all_matches_shift_together() -> None:
    before = parse(sarif(sarif_result(10), sarif_result(20)))
    after = parse(sarif(sarif_result(110), sarif_result(120)))
    assert [f.fingerprint for f in before.findings] == [f.fingerprint for f in after.findings]


# --- inputs and forcing a format -------------------------------------------------------------


def test_stream_is_read_when_source_is_a_non_seekable_binary_stream() -> None:
    class Pipe:
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self._data.read(min(size, 1000) if size > 0 else size)

    data = json.dumps(semgrep(*(semgrep_result(n) for n in range(1, 500)))).encode()
    report = parse_report(Pipe(data))  # type: ignore[arg-type]
    assert len(report.findings) == 499


def test_tool_forces_the_format_when_given() -> None:
    assert parse(PIP_AUDIT, tool="pip-audit").format == "pip_audit"
    assert parse([], tool="checkov").format == "checkov"


def test_sarif_is_parsed_when_tool_names_its_producer() -> None:
    assert parse(sarif(sarif_result(1)), tool="semgrep").format == "sarif"


def test_report_error_is_raised_when_tool_is_unknown() -> None:
    with pytest.raises(ReportError, match="Unknown report format 'nessus'"):
        parse(SNYK, tool="nessus")


def test_report_error_is_raised_when_tool_contradicts_the_report() -> None:
    with pytest.raises(ReportError, match="looks like grype"):
        parse(GRYPE, tool="trivy")


# --- bad inputs ------------------------------------------------------------------------------


def test_report_error_is_raised_when_input_is_empty() -> None:
    with pytest.raises(ReportError, match=r"empty \(0 bytes\)"):
        parse_report(b"")


def test_report_error_is_raised_when_json_is_truncated() -> None:
    data = json.dumps(semgrep(*(semgrep_result(n) for n in range(1, 50)))).encode()
    with pytest.raises(ReportError, match="truncated"):
        parse_report(data[: len(data) // 2])


def test_report_error_is_raised_when_input_is_not_json() -> None:
    with pytest.raises(ReportError, match="not valid JSON"):
        parse_report(b"<html>not a report</html>")


def test_report_error_is_raised_when_format_is_unknown() -> None:
    with pytest.raises(ReportError, match=r"Unrecognised report format.*'scanner', 'items'"):
        parse({"scanner": "x", "items": []})


def test_report_error_is_raised_when_sarif_version_is_2_0_0() -> None:
    with pytest.raises(ReportError, match=r"version '2\.0\.0'; only SARIF 2\.1\.0"):
        parse(sarif(sarif_result(1), version="2.0.0"))


def test_report_error_is_raised_when_sarif_version_follows_the_runs() -> None:
    text = json.dumps({"runs": [{"tool": {"driver": {"name": "x"}}}], "version": "2.0.0"})
    with pytest.raises(ReportError, match=r"only SARIF 2\.1\.0"):
        parse_report(text.encode())


def test_report_error_is_raised_when_nesting_is_10000_deep() -> None:
    with pytest.raises(ReportError, match="deeper than 256 levels"):
        parse_report(b"[" * 10000 + b"]" * 10000)


def test_report_error_is_raised_when_deep_nesting_hides_past_the_head() -> None:
    filler = [semgrep_result(n) for n in range(1, 400)]
    deep = semgrep_result(500) | {"extra": json.loads("[" * 300 + "]" * 300)}
    with pytest.raises(ReportError, match="deeper than 256 levels"):
        parse(semgrep(*filler, deep))


def test_report_error_is_raised_when_a_1_mb_string_fills_an_unknown_document() -> None:
    data = b'{"blob": "' + b"A" * 1_000_000 + b'"}'
    with pytest.raises(ReportError, match=r"first 64 KiB \('blob'\) match none"):
        parse_report(data)


def test_whole_report_is_rejected_when_a_result_fails_partway() -> None:
    document = semgrep(semgrep_result(1), semgrep_result(2))
    document["results"].append("not an object")
    with pytest.raises(ReportError, match=r"Semgrep result #3 is not a JSON object"):
        parse(document)
