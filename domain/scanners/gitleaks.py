"""Gitleaks JSON (`gitleaks detect -f json`): a top-level array of leaks, streamed."""

from __future__ import annotations

from domain.scanners.common import (
    JsonObject,
    code_key,
    each,
    first_line,
    integer,
    norm_path,
    sha256,
    text,
)
from domain.scanners.jsonstream import HeadInfo, Source
from domain.scanners.model import Draft, RawReport, ScannerFormat

NAME = "gitleaks"
_SEVERITY = "high"


def sniff(head: HeadInfo) -> bool:
    """Recognise Gitleaks by array entries with `RuleID`/`Secret`; `[]` is Gitleaks' clean run."""
    if head.root != "array":
        return False
    return head.empty or head.any("item.RuleID", "item.Secret", "item.Fingerprint")


def parse(source: Source) -> RawReport:
    """Stream the array; every leak is a high-severity secret finding."""
    scan = source.scan("item")
    return RawReport(tool=NAME, tool_version=None, drafts=each(scan.items(), "leak", _draft))


def _draft(leak: JsonObject) -> Draft:
    """Convert one leak, keyed by a hash of the secret (Gitleaks' own Fingerprint has the line).

    The secret and the raw match never reach the finding's text; only their hash is kept.
    """
    rule_id = text(leak, "RuleID") or "unknown"
    title = first_line(text(leak, "Description")) or rule_id
    secret = text(leak, "Secret") or text(leak, "Match")
    start = integer(leak, "StartLine")
    return Draft(
        tool=NAME,
        rule_id=rule_id,
        title=title,
        severity=_SEVERITY,
        kind="secret",
        message=title,
        key=code_key(None, sha256(secret) if secret else None, title),
        path=norm_path(text(leak, "File")),
        line=start or None,
        end_line=integer(leak, "EndLine") or start or None,
    )


FORMAT = ScannerFormat(NAME, sniff, parse)
