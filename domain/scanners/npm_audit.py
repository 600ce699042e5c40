"""npm audit JSON (`npm audit --json`): v2 `vulnerabilities` (npm 7+) and v1 `advisories`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial

from domain.scanners.common import (
    JsonObject,
    canonical_vuln,
    code_key,
    cvss,
    cwes,
    each,
    first_line,
    get,
    level,
    listing,
    mapping,
    norm_path,
    purl,
    text,
    vuln_ids,
)
from domain.scanners.jsonstream import HeadInfo, Source
from domain.scanners.model import Draft, RawReport, ScannerFormat

NAME = "npm_audit"
TOOL = "npm-audit"
_V1_KEYS = ("actions", "muted", "runId")
_PATCHED = re.compile(r"^\s*>=?\s*v?(\d[\w.+-]*)\s*$")


def sniff(head: HeadInfo) -> bool:
    """Recognise npm audit by `auditReportVersion` (v2) or `advisories` beside `actions` (v1)."""
    if head.root != "object":
        return False
    v1 = "advisories" in head.top and any(key in head.top for key in _V1_KEYS)
    actions = head.any("actions.item.resolves") and head.any("actions.item.module")
    return "auditReportVersion" in head.top or v1 or actions


def parse(source: Source) -> RawReport:
    """Read the document whole (it is keyed by package name) and convert either layout."""
    drafts: list[Draft] = []
    for document in source.scan("").items():
        report = mapping(document)
        if isinstance(report.get("advisories"), dict):
            drafts.extend(_v1(mapping(report, "advisories")))
        else:
            drafts.extend(_v2(mapping(report, "vulnerabilities")))
    return RawReport(tool=TOOL, tool_version=None, drafts=drafts)


def _v2(packages: JsonObject) -> Iterator[Draft]:
    """Convert npm 7+ entries: each advisory object in `via` is a finding on that package."""
    for key, entry in packages.items():
        package = mapping(entry)
        name = text(package, "name") or key
        advisories = [via for via in listing(package, "via") if isinstance(via, dict)]
        yield from each(advisories, f"advisory of {name}", partial(_v2_draft, package, name))


def _v2_draft(package: JsonObject, name: str, via: JsonObject) -> Draft:
    """Convert one v2 advisory; npm 7+ reports no installed version, only the vulnerable range."""
    dependency = text(via, "dependency") or text(via, "name") or name
    ids = vuln_ids(text(via, "url"))
    primary = ids[0] if ids else text(via, "source") or "unknown"
    title = first_line(text(via, "title")) or primary
    vulnerable = text(via, "range")
    fix = mapping(package, "fixAvailable")
    return Draft(
        tool=TOOL,
        rule_id=primary,
        title=title,
        severity=level(text(via, "severity"))
        or level(text(package, "severity"))
        or cvss(get(via, "cvss", "score"))
        or "medium",
        kind="dependency",
        message=f"{title} ({dependency} {vulnerable})" if vulnerable else title,
        key=code_key(None, None, title),
        path=norm_path(text(package, "nodes", 0)),
        package=purl("npm", dependency, None),
        package_name=dependency,
        fixed_version=text(fix, "version") if text(fix, "name") == dependency else None,
        cwe=cwes(via.get("cwe")),
        cve=ids,
        vuln_id=canonical_vuln(primary, ids),
    )


def _v1(advisories: JsonObject) -> Iterator[Draft]:
    """Convert npm 6 advisories: one finding per installed version the advisory matched."""
    for advisory in each(advisories.values(), "npm advisory", dict):
        versions = [text(found, "version") for found in listing(advisory, "findings")]
        for version in dict.fromkeys(versions or [None]):
            yield _v1_draft(advisory, version)


def _v1_draft(advisory: JsonObject, version: str | None) -> Draft:
    """Convert one v1 advisory for one installed version of its module."""
    name = text(advisory, "module_name")
    ghsa = text(advisory, "github_advisory_id")
    ids = vuln_ids(listing(advisory, "cves"), ghsa, text(advisory, "url"))
    primary = ghsa or text(advisory, "id") or "unknown"
    title = first_line(text(advisory, "title")) or primary
    patched = _PATCHED.match(text(advisory, "patched_versions") or "")
    return Draft(
        tool=TOOL,
        rule_id=primary,
        title=title,
        severity=level(text(advisory, "severity")) or "medium",
        kind="dependency",
        message=text(advisory, "overview") or title,
        key=code_key(None, None, title),
        package=purl("npm", name, version) or name,
        package_name=name,
        installed_version=version,
        fixed_version=patched.group(1) if patched else None,
        cwe=cwes(advisory.get("cwe")),
        cve=ids,
        vuln_id=canonical_vuln(primary, ids),
    )


FORMAT = ScannerFormat(NAME, sniff, parse)
