"""Snyk Open Source JSON (`snyk test --json`): one project object, or a list of them."""

from __future__ import annotations

from collections.abc import Iterator

from domain.scanners.common import (
    JsonObject,
    canonical_vuln,
    code_key,
    cvss,
    cwes,
    each,
    first_line,
    level,
    listing,
    mapping,
    norm_path,
    purl,
    text,
    texts,
    vuln_ids,
)
from domain.scanners.jsonstream import HeadInfo, Source
from domain.scanners.model import Draft, RawReport, ScannerFormat

NAME = "snyk"
_PROJECT_KEYS = ("packageManager", "dependencyCount", "uniqueCount", "projectName", "ok")


def sniff(head: HeadInfo) -> bool:
    """Recognise Snyk by `vulnerabilities` beside project keys such as `packageManager`."""
    if head.any("vulnerabilities.item.packageName", "item.vulnerabilities.item.packageName"):
        return True
    if head.root == "array":
        return head.any("item.vulnerabilities") and head.any(
            *(f"item.{key}" for key in _PROJECT_KEYS)
        )
    return "vulnerabilities" in head.top and any(key in head.top for key in _PROJECT_KEYS)


def parse(source: Source) -> RawReport:
    """Read the (modestly sized) document whole and convert each project's vulnerabilities."""
    scan = source.scan("")
    drafts = [
        draft
        for document in scan.items()
        for project in each(_projects(document), "Snyk project", _project)
        for draft in project
    ]
    return RawReport(tool=NAME, tool_version=None, drafts=drafts)


def _projects(document: object) -> list[object]:
    """Return the project objects: the list itself, or the single top-level object."""
    return document if isinstance(document, list) else [document]


def _project(project: JsonObject) -> list[Draft]:
    """Convert one project's vulnerabilities (each dependency path repeats them; deduped later)."""
    return list(_vulnerabilities(project))


def _vulnerabilities(project: JsonObject) -> Iterator[Draft]:
    """Yield a project's drafts, completing path and purl from project-level fields."""
    target = norm_path(text(project, "displayTargetFile") or text(project, "targetFile"))
    manager = text(project, "packageManager")
    for draft in each(listing(project, "vulnerabilities"), "Snyk vulnerability", _draft):
        draft.path = draft.path or target
        if draft.package is None and draft.package_name:
            draft.package = purl(manager, draft.package_name, draft.installed_version)
        draft.package = draft.package or draft.package_name
        yield draft


def _draft(vuln: JsonObject) -> Draft:
    """Convert one Snyk vulnerability (or license issue) on a package version."""
    primary = text(vuln, "id") or "unknown"
    identifiers = mapping(vuln, "identifiers")
    ids = vuln_ids(identifiers.get("CVE"), identifiers.get("GHSA"), primary)
    name = text(vuln, "packageName") or text(vuln, "name")
    version = text(vuln, "version")
    title = first_line(text(vuln, "title")) or primary
    return Draft(
        tool=NAME,
        rule_id=primary,
        title=title,
        severity=level(text(vuln, "severity")) or cvss(vuln.get("cvssScore")) or "medium",
        kind="dependency",
        message=text(vuln, "description") or title,
        key=code_key(None, None, title),
        package=purl(text(vuln, "packageManager"), name, version),
        package_name=name,
        installed_version=version,
        fixed_version=", ".join(texts(listing(vuln, "fixedIn"))) or None,
        cwe=cwes(identifiers.get("CWE")),
        cve=ids,
        vuln_id=canonical_vuln(primary, ids),
    )


FORMAT = ScannerFormat(NAME, sniff, parse)
