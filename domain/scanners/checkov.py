"""Checkov JSON (`checkov -o json`): results.failed_checks of one or several check types."""

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
    integer,
    level,
    listing,
    mapping,
    norm_path,
    purl,
    text,
    vuln_ids,
)
from domain.scanners.jsonstream import HeadInfo, JsonScan, Source
from domain.scanners.model import Draft, RawReport, ScannerFormat
from domain.scanners.spill import Store

NAME = "checkov"
_SCA_TYPES = frozenset({"sca_package", "sca_image"})


def sniff(head: HeadInfo) -> bool:
    """Recognise Checkov's list of check-type reports, one such report, or a bare summary."""
    if head.root == "array":
        return head.any("item.check_type")
    if head.root != "object":
        return False
    results = head.any("results.failed_checks", "results.passed_checks")
    return "check_type" in head.top or "checkov_version" in head.top or results


def parse(source: Source) -> RawReport:
    """Stream failed checks only; passed and skipped checks are not findings."""
    listed = source.root == "array"
    base = "item." if listed else ""
    scan = source.scan(
        f"{base}results.failed_checks.item",
        group="item" if listed else "",
        meta=(f"{base}check_type", f"{base}summary.checkov_version", "checkov_version"),
    )

    def version() -> str | None:
        return text(scan.first(f"{base}summary.checkov_version")) or text(
            scan.first("checkov_version")
        )

    drafts = _classified(source, scan, f"{base}check_type", listed)
    return RawReport(NAME, None).then_version(drafts, version)


def _classified(source: Source, scan: JsonScan, prefix: str, listed: bool) -> Iterator[Draft]:
    """Yield each failed check once its report's check_type is known, in report order.

    Checkov writes check_type before the results, so drafts normally go on at once. Should a
    check_type follow its results, that draft and every later one wait in a store (a spill file
    when streaming) until the whole document was read.
    """
    waiting: Store[tuple[int, Draft]] | None = None
    for ordinal, draft in enumerate(each(scan.items(), "Checkov failed check", _draft)):
        group = scan.group_of(ordinal) if listed else None
        if waiting is None and scan.values(prefix, group):
            _classify(draft, text(scan.first(prefix, group)))
            yield draft
            continue
        if waiting is None:
            waiting = source.store(tuple[int, Draft])
        waiting.append((ordinal, draft))
    if waiting is None:
        return
    for ordinal, draft in waiting.drain():
        _classify(draft, text(scan.first(prefix, scan.group_of(ordinal) if listed else None)))
        yield draft


def _draft(check: JsonObject) -> Draft:
    """Convert one failed check; its resource id is the line-independent key."""
    rule_id = text(check, "check_id") or "unknown"
    title = first_line(text(check, "check_name")) or rule_id
    resource = text(check, "resource")
    start = integer(check, "file_line_range", 0)
    end = integer(check, "file_line_range", 1)
    message = f"{title} (resource: {resource})" if resource else title
    draft = Draft(
        tool=NAME,
        rule_id=rule_id,
        title=title,
        severity=level(text(check, "severity")) or "medium",
        kind="config",
        message=message,
        key=code_key(resource, _code_block(check), title),
        path=norm_path(text(check, "file_path") or text(check, "repo_file_path")),
        line=start or None,
        end_line=end or start or None,
        cwe=cwes(check.get("cwe")),
    )
    _add_vulnerability(draft, mapping(check, "vulnerability_details"))
    return draft


def _code_block(check: JsonObject) -> str | None:
    """Join the source lines of Checkov's code_block ([[line, text], ...]) when present."""
    rows = [text(row, 1) or "" for row in listing(check, "code_block")]
    return "\n".join(rows) or None


def _add_vulnerability(draft: Draft, details: JsonObject) -> None:
    """Fill package fields for Checkov SCA results (vulnerability_details)."""
    name = text(details, "package_name")
    if not name:
        return
    primary = text(details, "id")
    draft.kind = "dependency"
    draft.package_name = name
    draft.installed_version = text(details, "package_version")
    draft.package = purl(text(details, "package_type"), name, draft.installed_version) or name
    draft.fixed_version = text(details, "lowest_fixed_version") or text(details, "fixed_version")
    draft.cve = vuln_ids(primary)
    draft.vuln_id = canonical_vuln(primary, draft.cve)
    draft.severity = level(text(details, "severity")) or cvss(details.get("cvss")) or draft.severity


def _classify(draft: Draft, check_type: str | None) -> None:
    """Set the kind from the report's check_type (secrets, SCA) or the check id."""
    if draft.kind == "dependency" or check_type in _SCA_TYPES:
        draft.kind = "dependency"
    elif check_type == "secrets" or draft.rule_id.startswith("CKV_SECRET"):
        draft.kind = "secret"


FORMAT = ScannerFormat(NAME, sniff, parse)
