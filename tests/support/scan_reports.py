"""Small, realistic Trivy and Grype JSON reports that share one vulnerability (CVE-2023-1234).

Trivy names it by its CVE (GHSA as vendor id); Grype, like it does with the GitHub provider,
names it by the GHSA and lists the CVE as a related vulnerability. PeaRL must see one finding.
"""

from __future__ import annotations

import json
from typing import Any

CVE = "CVE-2023-1234"
GHSA = "GHSA-2x3c-4v5b-6n7m"
REQUESTS_PURL = "pkg:pypi/requests@2.25.0"
URLLIB3_CVE = "CVE-2023-5678"
URLLIB3_PURL = "pkg:pypi/urllib3@1.26.4"


def _trivy_vuln(
    cve: str, name: str, version: str, fixed: str, vendor: list[str], title: str
) -> dict[str, Any]:
    return {
        "VulnerabilityID": cve,
        "VendorIDs": vendor,
        "PkgID": f"{name}@{version}",
        "PkgName": name,
        "PkgIdentifier": {"PURL": f"pkg:pypi/{name}@{version}", "UID": f"{name}-{version}"},
        "InstalledVersion": version,
        "FixedVersion": fixed,
        "Status": "fixed",
        "Layer": {},
        "SeveritySource": "ghsa",
        "PrimaryURL": f"https://avd.aquasec.com/nvd/{cve.lower()}",
        "DataSource": {
            "ID": "ghsa",
            "Name": "GitHub Security Advisory pip",
            "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Apip",
        },
        "Title": title,
        "Description": f"{title}. Versions before {fixed} are affected.",
        "Severity": "MEDIUM",
        "CweIDs": ["CWE-200"],
        "CVSS": {
            "ghsa": {
                "V3Vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:N/A:N",
                "V3Score": 6.1,
            }
        },
        "References": [f"https://nvd.nist.gov/vuln/detail/{cve}"],
        "PublishedDate": "2023-05-26T18:15:14.147Z",
        "LastModifiedDate": "2023-09-17T09:15:12.457Z",
    }


def trivy_report(*, with_requests: bool = True) -> bytes:
    """`trivy fs -f json .` of a project with requests 2.25.0 and urllib3 1.26.4 pinned."""
    vulns = [
        _trivy_vuln(
            URLLIB3_CVE,
            "urllib3",
            "1.26.4",
            "1.26.18",
            [],
            "urllib3: Cookie request header isn't stripped during cross-origin redirects",
        )
    ]
    if with_requests:
        vulns.insert(
            0,
            _trivy_vuln(
                CVE,
                "requests",
                "2.25.0",
                "2.31.0",
                [GHSA],
                "requests: Unintended leak of Proxy-Authorization header",
            ),
        )
    report = {
        "SchemaVersion": 2,
        "CreatedAt": "2024-05-02T10:11:12.123456789Z",
        "ArtifactName": ".",
        "ArtifactType": "filesystem",
        "Trivy": {"Version": "0.50.1"},
        "Metadata": {"ImageConfig": {"architecture": "", "os": "", "rootfs": {"type": ""}}},
        "Results": [
            {
                "Target": "requirements.txt",
                "Class": "lang-pkgs",
                "Type": "pip",
                "Vulnerabilities": vulns,
            }
        ],
    }
    return json.dumps(report, indent=2).encode()


def grype_report() -> bytes:
    """`grype dir:. -o json` of the same project (GitHub provider: GHSA primary, CVE related)."""
    report = {
        "matches": [
            {
                "vulnerability": {
                    "id": GHSA,
                    "dataSource": f"https://github.com/advisories/{GHSA}",
                    "namespace": "github:language:python",
                    "severity": "Medium",
                    "urls": [f"https://github.com/advisories/{GHSA}"],
                    "description": "Unintended leak of Proxy-Authorization header in requests",
                    "cvss": [
                        {
                            "version": "3.1",
                            "vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:N/A:N",
                            "metrics": {
                                "baseScore": 6.1,
                                "exploitabilityScore": 1.6,
                                "impactScore": 4.0,
                            },
                            "vendorMetadata": {"base_severity": "Medium", "status": "N/A"},
                        }
                    ],
                    "fix": {"versions": ["2.31.0"], "state": "fixed"},
                    "advisories": [],
                },
                "relatedVulnerabilities": [
                    {
                        "id": CVE,
                        "dataSource": f"https://nvd.nist.gov/vuln/detail/{CVE}",
                        "namespace": "nvd:cpe",
                        "severity": "Medium",
                        "urls": [],
                        "description": "Requests leaks Proxy-Authorization headers on redirect.",
                        "cvss": [],
                    }
                ],
                "matchDetails": [
                    {
                        "type": "exact-direct-match",
                        "matcher": "python-matcher",
                        "searchedBy": {
                            "language": "python",
                            "namespace": "github:language:python",
                            "package": {"name": "requests", "version": "2.25.0"},
                        },
                        "found": {"versionConstraint": "<2.31.0 (python)", "vulnerabilityID": GHSA},
                    }
                ],
                "artifact": {
                    "id": "8f2e6c1d3b4a5f60",
                    "name": "requests",
                    "version": "2.25.0",
                    "type": "python",
                    "locations": [{"path": "/requirements.txt"}],
                    "language": "python",
                    "licenses": [],
                    "cpes": ["cpe:2.3:a:python-requests:requests:2.25.0:*:*:*:*:*:*:*"],
                    "purl": REQUESTS_PURL,
                    "upstreams": [],
                },
            }
        ],
        "source": {"type": "directory", "target": "."},
        "distro": {"name": "", "version": "", "idLike": None},
        "descriptor": {"name": "grype", "version": "0.74.7"},
    }
    return json.dumps(report, indent=2).encode()
