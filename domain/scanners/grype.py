"""Grype JSON (`grype -o json`): one dependency finding per matches[] entry, streamed."""

from __future__ import annotations

from domain.scanners.common import (
    JsonObject,
    canonical_vuln,
    code_key,
    cvss,
    each,
    first_line,
    level,
    listing,
    mapping,
    norm_path,
    number,
    purl,
    text,
    texts,
    vuln_ids,
)
from domain.scanners.jsonstream import HeadInfo, Source
from domain.scanners.model import Draft, RawReport, ScannerFormat

NAME = "grype"
_LEVELS = {
    "critical": "critical",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "negligible": "info",
}
_NO_FIX = frozenset({"not-fixed", "wont-fix", "unknown"})


def sniff(head: HeadInfo) -> bool:
    """Recognise Grype by `matches` entries holding `vulnerability`/`artifact`, or `descriptor`."""
    if head.root != "object" or "matches" not in head.top:
        return False
    matched = head.any("matches.item.vulnerability", "matches.item.artifact")
    return matched or any(key in head.top for key in ("descriptor", "distro", "source"))


def parse(source: Source) -> RawReport:
    """Stream matches[]; the Grype version comes from `descriptor`."""
    scan = source.scan("matches.item", meta=("descriptor.version",))
    drafts = each(scan.items(), "Grype match", _draft)
    return RawReport(NAME, None).then_version(
        drafts, lambda: text(scan.first("descriptor.version"))
    )


def _draft(match: JsonObject) -> Draft:
    """Convert one match of a vulnerability against a package."""
    vuln = mapping(match, "vulnerability")
    artifact = mapping(match, "artifact")
    related = [mapping(entry) for entry in listing(match, "relatedVulnerabilities")]
    primary = text(vuln, "id") or "unknown"
    ids = vuln_ids(primary, [text(entry, "id") for entry in related])
    name = text(artifact, "name")
    version = text(artifact, "version")
    title = f"{primary} in {name or 'package'}" + (f" {version}" if version else "")
    descriptions = [text(entry, "description") for entry in (vuln, *related)]
    message = next((value for value in descriptions if value), title)
    return Draft(
        tool=NAME,
        rule_id=primary,
        title=first_line(title),
        severity=_severity(vuln, related),
        kind="dependency",
        message=message,
        key=code_key(None, None, message),
        path=norm_path(text(artifact, "locations", 0, "path")),
        package=text(artifact, "purl") or purl(text(artifact, "type"), name, version) or name,
        package_name=name,
        installed_version=version,
        fixed_version=_fix(vuln),
        cve=ids,
        vuln_id=canonical_vuln(primary, ids),
    )


def _severity(vuln: JsonObject, related: list[JsonObject]) -> str:
    """Map Grype's severity word; when Unknown use the highest CVSS base score reported."""
    named = level(text(vuln, "severity"), _LEVELS)
    if named:
        return named
    scores = [
        score
        for entry in (vuln, *related)
        for metric in listing(entry, "cvss")
        if (score := number(metric, "metrics", "baseScore")) is not None
    ]
    return (cvss(max(scores)) if scores else None) or "info"


def _fix(vuln: JsonObject) -> str | None:
    """Return the fixed versions (comma separated) unless Grype says there is no fix."""
    if text(vuln, "fix", "state") in _NO_FIX:
        return None
    return ", ".join(texts(listing(vuln, "fix", "versions"))) or None


FORMAT = ScannerFormat(NAME, sniff, parse)
