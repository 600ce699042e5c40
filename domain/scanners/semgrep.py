"""Semgrep JSON (`semgrep --json`): one finding per results[] entry, streamed."""

from __future__ import annotations

from domain.scanners.common import (
    JsonObject,
    code_key,
    cwes,
    each,
    first_line,
    integer,
    level,
    mapping,
    norm_path,
    purl,
    text,
    vuln_ids,
)
from domain.scanners.jsonstream import HeadInfo, Source
from domain.scanners.model import Draft, RawReport, ScannerFormat

NAME = "semgrep"
_PLACEHOLDER = "requires login"
_LEVELS = {
    "error": "high",
    "warning": "medium",
    "info": "low",
    "critical": "critical",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "inventory": "info",
    "experiment": "info",
}
_SEMGREP_KEYS = ("paths", "skipped_rules", "engine_requested", "interfile_languages_used")


def sniff(head: HeadInfo) -> bool:
    """Recognise Semgrep by `results` whose entries carry `check_id`, or its top-level keys."""
    if head.root != "object" or "results" not in head.top or "generated_at" in head.top:
        return False
    return head.any("results.item.check_id") or any(key in head.top for key in _SEMGREP_KEYS)


def parse(source: Source) -> RawReport:
    """Stream results[]; the Semgrep version is read from the top-level `version` key."""
    scan = source.scan("results.item", meta=("version",))
    drafts = each(scan.items(), "Semgrep result", _draft)
    return RawReport(NAME, None).then_version(drafts, lambda: text(scan.first("version")))


def _real(value: str | None) -> str | None:
    """Drop Semgrep's "requires login" placeholder, which the OSS CLI puts in every result."""
    return None if value is None or value.lower() == _PLACEHOLDER else value


def _draft(result: JsonObject) -> Draft:
    """Convert one Semgrep result."""
    extra = mapping(result, "extra")
    meta = mapping(extra, "metadata")
    rule_id = text(result, "check_id") or "unknown"
    message = text(extra, "message") or rule_id
    line = integer(result, "start", "line")
    draft = Draft(
        tool=NAME,
        rule_id=rule_id,
        title=first_line(message),
        severity=level(text(extra, "severity"), _LEVELS) or "medium",
        kind=_kind(rule_id, meta),
        message=message,
        key=code_key(_real(text(extra, "fingerprint")), _real(text(extra, "lines")), message),
        confidence=(text(meta, "confidence") or "").lower() or None,
        path=norm_path(text(result, "path")),
        line=line,
        end_line=integer(result, "end", "line") or line,
        cwe=cwes(meta.get("cwe")),
        cve=vuln_ids(meta.get("cve"), meta.get("sca-vuln-database-identifier")),
    )
    _add_dependency(draft, mapping(extra, "sca_info", "dependency_match", "found_dependency"))
    return draft


def _kind(rule_id: str, meta: JsonObject) -> str:
    """Tell secrets rules (category/rule id) from ordinary code rules."""
    category = (text(meta, "category") or "").lower()
    if category == "secrets" or ".secrets." in f".{rule_id}.":
        return "secret"
    return "code"


def _add_dependency(draft: Draft, found: JsonObject) -> None:
    """Turn a Semgrep Supply Chain match into a dependency finding."""
    name = text(found, "package")
    if not name:
        return
    draft.kind = "dependency"
    draft.package_name = name
    draft.installed_version = text(found, "version")
    draft.package = purl(text(found, "ecosystem"), name, draft.installed_version) or name
    draft.vuln_id = draft.cve[0] if draft.cve else draft.rule_id


FORMAT = ScannerFormat(NAME, sniff, parse)
