"""Trivy JSON (`trivy -f json`): Vulnerabilities, Misconfigurations and Secrets per target."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain

from domain.scanners.common import (
    JsonObject,
    canonical_vuln,
    code_key,
    cvss,
    cwes,
    each,
    first_line,
    integer,
    level,
    listing,
    mapping,
    norm_path,
    number,
    purl,
    require_object,
    text,
    vuln_ids,
)
from domain.scanners.jsonstream import HeadInfo, Source
from domain.scanners.model import Draft, RawReport, ScannerFormat

NAME = "trivy"
_LEVELS = {"critical": "critical", "high": "high", "medium": "medium", "low": "low"}
_SKIPPED_STATUSES = frozenset({"PASS", "EXCEPTION"})


def sniff(head: HeadInfo) -> bool:
    """Recognise Trivy by `SchemaVersion`/`ArtifactName` or targets under `Results`."""
    if head.root != "object":
        return False
    return "SchemaVersion" in head.top or head.any("ArtifactName", "Results.item.Target")


def parse(source: Source) -> RawReport:
    """Stream Results[] (one entry per scanned target), converting each target as it is read."""
    scan = source.scan("Results.item", meta=("Trivy.Version",))
    drafts = chain.from_iterable(each(scan.items(), "Trivy result", _target))
    return RawReport(NAME, None).then_version(drafts, lambda: text(scan.first("Trivy.Version")))


def _target(result: JsonObject) -> list[Draft]:
    """Convert every vulnerability, failed misconfiguration and secret of one target."""
    return [*_vulnerabilities(result), *_misconfigurations(result), *_secrets(result)]


def _entries(result: JsonObject, key: str) -> Iterator[JsonObject]:
    """Yield the objects of one of a target's finding lists, rejecting non-objects."""
    target = text(result, "Target") or "target"
    for position, entry in enumerate(listing(result, key), 1):
        yield require_object(entry, f"{key} #{position} of Trivy target {target!r}")


def _severity(entry: JsonObject) -> str:
    """Map Trivy's severity word; for UNKNOWN fall back to the highest CVSS score given."""
    named = level(text(entry, "Severity"), _LEVELS)
    if named:
        return named
    scores = [
        score
        for source in mapping(entry, "CVSS").values()
        for score in (number(source, "V3Score"), number(source, "V2Score"))
        if score is not None
    ]
    return (cvss(max(scores)) if scores else None) or "info"


def _vulnerabilities(result: JsonObject) -> Iterator[Draft]:
    """Convert a target's package vulnerabilities."""
    for vuln in _entries(result, "Vulnerabilities"):
        primary = text(vuln, "VulnerabilityID") or "unknown"
        name = text(vuln, "PkgName")
        version = text(vuln, "InstalledVersion")
        ids = vuln_ids(primary, listing(vuln, "VendorIDs"))
        title = first_line(text(vuln, "Title")) or f"{primary} in {name or 'package'}"
        message = text(vuln, "Description") or title
        yield Draft(
            tool=NAME,
            rule_id=primary,
            title=title,
            severity=_severity(vuln),
            kind="dependency",
            message=message,
            key=code_key(None, None, message),
            path=norm_path(text(vuln, "PkgPath") or text(result, "Target")),
            package=text(vuln, "PkgIdentifier", "PURL")
            or purl(text(result, "Type"), name, version)
            or name,
            package_name=name,
            installed_version=version,
            fixed_version=text(vuln, "FixedVersion"),
            cwe=cwes(listing(vuln, "CweIDs")),
            cve=ids,
            vuln_id=canonical_vuln(primary, ids),
        )


def _misconfigurations(result: JsonObject) -> Iterator[Draft]:
    """Convert a target's failed misconfiguration checks (PASS/EXCEPTION are skipped)."""
    for check in _entries(result, "Misconfigurations"):
        if text(check, "Status") in _SKIPPED_STATUSES:
            continue
        rule_id = text(check, "ID") or text(check, "AVDID") or "unknown"
        title = first_line(text(check, "Title")) or rule_id
        message = text(check, "Message") or text(check, "Description") or title
        cause = mapping(check, "CauseMetadata")
        start = integer(cause, "StartLine")
        yield Draft(
            tool=NAME,
            rule_id=rule_id,
            title=title,
            severity=_severity(check),
            kind="config",
            message=message,
            key=code_key(None, _cause_lines(cause), message),
            path=norm_path(text(result, "Target")),
            line=start or None,
            end_line=integer(cause, "EndLine") or start or None,
            cwe=cwes(listing(check, "CweIDs")),
        )


def _cause_lines(cause: JsonObject) -> str | None:
    """Join the code lines Trivy marks as the cause of a misconfiguration."""
    rows = [line for line in listing(cause, "Code", "Lines") if mapping(line).get("IsCause")]
    return "\n".join(text(row, "Content") or "" for row in rows) or None


def _secrets(result: JsonObject) -> Iterator[Draft]:
    """Convert a target's secrets; the (already redacted) match is the key, never the message."""
    for secret in _entries(result, "Secrets"):
        rule_id = text(secret, "RuleID") or "unknown"
        title = first_line(text(secret, "Title")) or rule_id
        category = text(secret, "Category")
        message = f"{title} ({category})" if category else title
        start = integer(secret, "StartLine")
        yield Draft(
            tool=NAME,
            rule_id=rule_id,
            title=title,
            severity=_severity(secret),
            kind="secret",
            message=message,
            key=code_key(None, text(secret, "Match"), message),
            path=norm_path(text(result, "Target")),
            line=start or None,
            end_line=integer(secret, "EndLine") or start or None,
        )


FORMAT = ScannerFormat(NAME, sniff, parse)
