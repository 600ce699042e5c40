"""CycloneDX 1.4+ JSON with a `vulnerabilities` array (SBOM scanners' VEX/VDR output)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

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
    number,
    purl_parts,
    text,
    vuln_ids,
)
from domain.scanners.jsonstream import HeadInfo, Source
from domain.scanners.model import SEVERITIES, Draft, RawReport, ScannerFormat

NAME = "cyclonedx"
_DISMISSED = frozenset({"not_affected", "false_positive"})
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


@dataclass(frozen=True, slots=True)
class _Component:
    """The package identity a vulnerability's `affects[].ref` points at."""

    name: str | None
    version: str | None
    purl: str | None


def sniff(head: HeadInfo) -> bool:
    """Recognise CycloneDX by `bomFormat: CycloneDX` (or `specVersion` with BOM sections)."""
    if head.root != "object":
        return False
    sections = "vulnerabilities" in head.top or "components" in head.top
    return head.values.get("bomFormat") == "CycloneDX" or ("specVersion" in head.top and sections)


def parse(source: Source) -> RawReport:
    """Read the BOM whole (vulnerabilities refer to components by bom-ref) and convert it."""
    drafts: list[Draft] = []
    tool, version = NAME, None
    for document in source.scan("").items():
        bom = mapping(document)
        tool, version = _producer(bom)
        components = _components(bom)
        vulns = each(listing(bom, "vulnerabilities"), "CycloneDX vulnerability", dict)
        drafts.extend(d for vuln in vulns for d in _vulnerability(vuln, components, tool))
    return RawReport(tool=tool, tool_version=version, drafts=drafts)


def _producer(bom: JsonObject) -> tuple[str, str | None]:
    """Return the scanner named in metadata.tools (1.4 list or 1.5 object), else "cyclonedx"."""
    tools = mapping(bom, "metadata", "tools")
    entries = listing(tools, "components") if tools else listing(bom, "metadata", "tools")
    for entry in entries:
        name = text(entry, "name")
        if name:
            return name.lower(), text(entry, "version")
    return NAME, None


def _components(bom: JsonObject) -> dict[str, _Component]:
    """Index every (nested) component and the metadata component by bom-ref."""
    found: dict[str, _Component] = {}
    pending = [mapping(bom, "metadata", "component"), *listing(bom, "components")]
    while pending:
        component = mapping(pending.pop())
        ref = text(component, "bom-ref")
        if ref:
            found[ref] = _Component(
                text(component, "name"), text(component, "version"), text(component, "purl")
            )
        pending.extend(listing(component, "components"))
    return found


def _resolve(ref: str | None, components: dict[str, _Component]) -> _Component:
    """Find the component a ref names; a ref that is itself a purl is decoded directly."""
    if ref and ref in components:
        return components[ref]
    name, version = purl_parts(ref)
    return _Component(name, version, ref if name else None)


def _vulnerability(
    vuln: JsonObject, components: dict[str, _Component], tool: str
) -> Iterator[Draft]:
    """Convert one vulnerability into a finding per affected component (dismissed VEX skipped)."""
    if text(vuln, "analysis", "state") in _DISMISSED:
        return
    primary = text(vuln, "id") or "unknown"
    ids = vuln_ids(primary, [text(ref, "id") for ref in listing(vuln, "references")])
    title = first_line(text(vuln, "description")) or primary
    for affected in listing(vuln, "affects") or [{}]:
        component = _resolve(text(affected, "ref"), components)
        yield Draft(
            tool=tool,
            rule_id=primary,
            title=title,
            severity=_severity(vuln),
            kind="dependency",
            message=text(vuln, "detail") or text(vuln, "description") or title,
            key=code_key(None, None, title),
            package=component.purl or component.name,
            package_name=component.name,
            installed_version=component.version,
            fixed_version=_fixed(mapping(affected)),
            cwe=cwes(listing(vuln, "cwes")),
            cve=ids,
            vuln_id=canonical_vuln(primary, ids),
        )


def _severity(vuln: JsonObject) -> str:
    """Take the most severe rating's word, else its CVSS score; unrated means medium."""
    ratings = listing(vuln, "ratings")
    named = [name for rating in ratings if (name := level(text(rating, "severity")))]
    if named:
        return min(named, key=_RANK.__getitem__)
    scores = [score for rating in ratings if (score := number(rating, "score")) is not None]
    unknown = any(text(rating, "severity") == "unknown" for rating in ratings)
    return (cvss(max(scores)) if scores else None) or ("info" if unknown else "medium")


def _fixed(affected: JsonObject) -> str | None:
    """Return the versions an `affects` entry marks as unaffected (the fixed ones)."""
    versions = [
        text(entry, "version")
        for entry in listing(affected, "versions")
        if text(entry, "status") == "unaffected"
    ]
    return ", ".join(v for v in versions if v) or None


FORMAT = ScannerFormat(NAME, sniff, parse)
