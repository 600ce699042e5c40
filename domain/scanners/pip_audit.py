"""pip-audit JSON (`pip-audit -f json`): dependencies[].vulns[], or the older bare list."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain

from domain.scanners.common import (
    JsonObject,
    canonical_vuln,
    code_key,
    each,
    listing,
    purl,
    text,
    texts,
    vuln_ids,
)
from domain.scanners.jsonstream import HeadInfo, Source
from domain.scanners.model import Draft, RawReport, ScannerFormat

NAME = "pip_audit"
TOOL = "pip-audit"
_SEVERITY = "medium"


def sniff(head: HeadInfo) -> bool:
    """Recognise pip-audit by dependency entries carrying `vulns` (or `dependencies`+`fixes`)."""
    if head.root == "array":
        return head.any("item.vulns")
    if head.root != "object":
        return False
    both = "dependencies" in head.top and "fixes" in head.top
    return both or head.any("dependencies.item.vulns")


def parse(source: Source) -> RawReport:
    """Stream the dependency entries and convert each of their vulnerabilities."""
    prefix = "item" if source.root == "array" else "dependencies.item"
    scan = source.scan(prefix)
    groups = each(scan.items(), "pip-audit dependency", lambda dep: list(_dependency(dep)))
    return RawReport(tool=TOOL, tool_version=None, drafts=chain.from_iterable(groups))


def _dependency(dependency: JsonObject) -> Iterator[Draft]:
    """Convert one installed distribution's vulnerabilities (pip-audit gives no severity)."""
    name = text(dependency, "name")
    version = text(dependency, "version")
    for vuln in each(listing(dependency, "vulns"), f"vulnerability of {name}", dict):
        primary = text(vuln, "id") or "unknown"
        ids = vuln_ids(primary, listing(vuln, "aliases"))
        title = f"{primary} in {name or 'package'}" + (f" {version}" if version else "")
        message = text(vuln, "description") or title
        yield Draft(
            tool=TOOL,
            rule_id=primary,
            title=title,
            severity=_SEVERITY,
            kind="dependency",
            message=message,
            key=code_key(None, None, title),
            package=purl("pypi", name, version) or name,
            package_name=name,
            installed_version=version,
            fixed_version=", ".join(texts(listing(vuln, "fix_versions"))) or None,
            cve=ids,
            vuln_id=canonical_vuln(primary, ids),
        )


FORMAT = ScannerFormat(NAME, sniff, parse)
