"""Pure mapping of finding_view rows to VEX documents (OpenVEX 0.2.0, CycloneDX 1.5).

Which findings become statements
  * a finding whose details carry a vulnerability id (`details.cve`, CVEs first, then GHSAs, as
    the parsers store them) is named by the first id; the other ids and, for packages, a
    differing scanner rule id (e.g. Grype's GHSA primary) become aliases;
  * otherwise dependency findings (PYSEC-, SNYK-… ids) and code findings (SAST; hand-recorded
    findings have no kind and count as code) are named by their rule id, so a triage decision
    on a code finding is exported too;
  * secrets and misconfigurations without a vulnerability id are left out: they are not
    vulnerabilities of a product that a VEX consumer could match.

Products: the product is always the project (`urn:uuid:<project id>`); a package finding names
the package as the product's subcomponent (its purl). A statement says "*our project* is (not)
affected through this package", never that the upstream package itself is not affected, which
a bare purl product would claim. Each statement's `@id` is `urn:uuid:<finding id>`.

Status mapping (PeaRL → OpenVEX / CycloneDX analysis.state)
  * open, reopened → affected / in_triage: a scanner reported it and nobody has analysed it;
    OpenVEX's `affected` is the conservative claim (consumers keep alerting), CycloneDX's
    `exploitable` would assert an analysis that did not happen.
  * fixed → fixed / resolved.
  * not_affected → not_affected / not_affected, justification
    `vulnerable_code_not_in_execute_path` / `code_not_reachable` unless a label is recorded.
  * false_positive → not_affected / false_positive, justification `vulnerable_code_not_present`
    unless a label is recorded: the scanner matched the component but its vulnerable code is not
    actually there (a wrong version match, a backported fix, a SAST mismatch).
    `component_not_present` would claim the component is absent, which the scan contradicts.
  * accepted_risk → affected / exploitable with response will_not_fix; the action statement
    (detail) is "risk accepted: <justification>".

A recorded label: a triage justification that starts with an OpenVEX or CycloneDX
justification label ("vulnerable_code_not_present: built without the C extension") uses that
label, translated to the closest label of the other format; the whole text is kept as the
impact statement / analysis detail.

Determinism: statements, aliases and components are sorted and the encoding follows the struct
field order, so the same rows, author and time give the same bytes. The document's `@id` /
`serialNumber` are stable per project; its `version` is the sum of the included findings'
aggregate versions, which only grows when any of them changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import msgspec

from contracts.vex import (
    CdxAffects,
    CdxAnalysis,
    CdxAuthor,
    CdxComponent,
    CdxJustification,
    CdxMetadata,
    CdxReference,
    CdxResponse,
    CdxSource,
    CdxState,
    CdxVulnerability,
    CycloneDxVex,
    OpenVexComponent,
    OpenVexDocument,
    OpenVexJustification,
    OpenVexProduct,
    OpenVexStatement,
    OpenVexStatus,
    OpenVexVulnerability,
)
from domain.base import stable_id
from domain.scanners.common import purl_parts

Row = Mapping[str, Any]

#: Closest CycloneDX justification for each OpenVEX one (CycloneDX has no "component absent").
OPENVEX_TO_CDX: Mapping[OpenVexJustification, CdxJustification] = {
    "component_not_present": "code_not_present",
    "vulnerable_code_not_present": "code_not_present",
    "vulnerable_code_not_in_execute_path": "code_not_reachable",
    "vulnerable_code_cannot_be_controlled_by_adversary": "requires_environment",
    "inline_mitigations_already_exist": "protected_by_mitigating_control",
}
#: Closest OpenVEX justification for each CycloneDX one.
CDX_TO_OPENVEX: Mapping[CdxJustification, OpenVexJustification] = {
    "code_not_present": "vulnerable_code_not_present",
    "code_not_reachable": "vulnerable_code_not_in_execute_path",
    "requires_configuration": "vulnerable_code_cannot_be_controlled_by_adversary",
    "requires_dependency": "component_not_present",
    "requires_environment": "vulnerable_code_cannot_be_controlled_by_adversary",
    "protected_by_compiler": "inline_mitigations_already_exist",
    "protected_at_runtime": "inline_mitigations_already_exist",
    "protected_at_perimeter": "inline_mitigations_already_exist",
    "protected_by_mitigating_control": "inline_mitigations_already_exist",
}

_EXPORTED_KINDS = frozenset({"code", "dependency", None})
_CVE = re.compile(r"CVE-\d{4}-\d{4,}", re.IGNORECASE)
_GHSA = re.compile(r"GHSA(?:-[0-9a-z]{4}){3}", re.IGNORECASE)
_LABEL = re.compile(r"\s*([a-z_]+)\b")
_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("CVE-", "NVD", "https://nvd.nist.gov/vuln/detail/"),
    ("GHSA-", "GitHub Advisories", "https://github.com/advisories/"),
    ("PYSEC-", "OSV", "https://osv.dev/vulnerability/"),
    ("RUSTSEC-", "OSV", "https://osv.dev/vulnerability/"),
    ("GO-", "OSV", "https://osv.dev/vulnerability/"),
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One exportable finding, in the terms both VEX formats need."""

    finding_id: str
    name: str
    aliases: tuple[str, ...]
    status: str
    justification: str
    purl: str | None
    package: str | None
    version: str | None
    fixed_version: str | None
    tool: str
    sources: tuple[str, ...]
    location: str | None
    cwes: tuple[int, ...]
    aggregate_version: int

    @property
    def component_ref(self) -> str | None:
        """The package as a reference: its purl, else name@version, else None (code findings)."""
        if self.purl:
            return self.purl
        if self.package:
            return f"{self.package}@{self.version}" if self.version else self.package
        return None


# --- shared ----------------------------------------------------------------------------------


def project_ref(project: Row) -> str:
    """The project as an IRI: the product of every statement, the BOM's own component."""
    return f"urn:uuid:{project['id']}"


def entries(findings: Sequence[Row]) -> list[Entry]:
    """The exportable findings, sorted by (vulnerability, component, finding id)."""
    found = [entry for row in findings if (entry := _entry(row)) is not None]
    return sorted(found, key=lambda e: (e.name, e.component_ref or "", e.finding_id))


def _entry(row: Row) -> Entry | None:
    details: Mapping[str, Any] = row.get("details") or {}
    kind = details.get("kind")
    ids = [_vuln_name(str(v)) for v in details.get("cve") or [] if str(v).strip()]
    if not ids and kind not in _EXPORTED_KINDS:
        return None
    rule_id = str(row["rule_id"])
    name = ids[0] if ids else _vuln_name(rule_id)
    aliases = set(ids[1:])
    if ids and kind == "dependency" and _vuln_name(rule_id) != name:
        aliases.add(_vuln_name(rule_id))
    package = _text(details.get("package"))
    purl = package if package and package.startswith("pkg:") else None
    purl_name, purl_version = purl_parts(purl)
    path, line = _text(row.get("path")), row.get("line")
    return Entry(
        finding_id=str(row["id"]),
        name=name,
        aliases=tuple(sorted(aliases - {name})),
        status=str(row["status"]),
        justification=_text(row.get("justification")) or "",
        purl=purl,
        package=purl_name or package,
        version=purl_version or _text(details.get("installed_version")),
        fixed_version=_text(details.get("fixed_version")),
        tool=str(row["tool"]),
        sources=tuple(sorted({str(s) for s in row.get("sources") or [row["tool"]]})),
        location=None if purl or package or not path else (f"{path}:{line}" if line else path),
        cwes=_cwe_numbers(details.get("cwe") or []),
        aggregate_version=int(row.get("version") or 1),
    )


def _vuln_name(value: str) -> str:
    """CVE ids upper-case, GHSA ids GitHub-style (GHSA-xxxx-…), anything else as given."""
    value = value.strip()
    if _CVE.fullmatch(value):
        return value.upper()
    if _GHSA.fullmatch(value):
        return "GHSA" + value[4:].lower()
    return value


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _cwe_numbers(values: Sequence[object]) -> tuple[int, ...]:
    numbers = {int(m.group(1)) for v in values if (m := re.search(r"(\d+)", str(v)))}
    return tuple(sorted(numbers))


def recorded_label(text: str) -> tuple[OpenVexJustification | None, CdxJustification | None]:
    """The justification label a triage text starts with, in both vocabularies (or none)."""
    match = _LABEL.match(text)
    word = match.group(1) if match else ""
    for label in get_args(OpenVexJustification):
        if word == label:
            openvex: OpenVexJustification = label
            return openvex, OPENVEX_TO_CDX[openvex]
    for label in get_args(CdxJustification):
        if word == label:
            cdx: CdxJustification = label
            return CDX_TO_OPENVEX[cdx], cdx
    return None, None


def document_version(items: Sequence[Entry]) -> int:
    """Grows whenever an included finding changes (aggregate versions only grow)."""
    return max(1, sum(e.aggregate_version for e in items))


def _pending_action(entry: Entry) -> str:
    if entry.fixed_version and entry.package:
        return f"update {entry.package} to {entry.fixed_version}"
    return "not triaged yet: remediate it, or triage the finding in PeaRL"


def _notes(entry: Entry) -> str:
    place = entry.location or (None if entry.purl else entry.component_ref)
    where = f" at {place}" if place else ""
    return f"PeaRL status {entry.status}, reported by {', '.join(entry.sources)}{where}"


def encode(document: OpenVexDocument | CycloneDxVex) -> bytes:
    """The document's JSON bytes (field order as declared: stable across runs)."""
    return msgspec.json.encode(document)


# --- OpenVEX ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenVexVerdict:
    status: OpenVexStatus
    justification: OpenVexJustification | None = None
    impact_statement: str | None = None
    action_statement: str | None = None


def openvex_verdict(entry: Entry) -> OpenVexVerdict:
    """PeaRL status and justification → OpenVEX status, justification and statements."""
    text = entry.justification
    label, _ = recorded_label(text)
    match entry.status:
        case "fixed":
            return OpenVexVerdict("fixed")
        case "not_affected":
            chosen = label or "vulnerable_code_not_in_execute_path"
            return OpenVexVerdict("not_affected", chosen, text or None)
        case "false_positive":
            chosen = label or "vulnerable_code_not_present"
            return OpenVexVerdict("not_affected", chosen, f"false positive: {text}")
        case "accepted_risk":
            return OpenVexVerdict("affected", action_statement=f"risk accepted: {text}")
        case _:
            return OpenVexVerdict("affected", action_statement=_pending_action(entry))


def openvex_statement(entry: Entry, product: str) -> OpenVexStatement:
    verdict = openvex_verdict(entry)
    ref = entry.component_ref
    subcomponents = [OpenVexComponent(id=ref)] if ref and entry.purl else []
    return OpenVexStatement(
        id=f"urn:uuid:{entry.finding_id}",
        vulnerability=OpenVexVulnerability(name=entry.name, aliases=list(entry.aliases)),
        products=[OpenVexProduct(id=product, subcomponents=subcomponents)],
        status=verdict.status,
        status_notes=_notes(entry),
        justification=verdict.justification,
        impact_statement=verdict.impact_statement,
        action_statement=verdict.action_statement,
    )


def openvex_document(
    project: Row, findings: Sequence[Row], author: str, now: str
) -> OpenVexDocument:
    """An OpenVEX 0.2.0 document of the project's findings (see the module docstring)."""
    items = entries(findings)
    product = project_ref(project)
    return OpenVexDocument(
        id=f"urn:pearl:vex:{project['id']}",
        author=author,
        timestamp=now,
        version=document_version(items),
        statements=[openvex_statement(e, product) for e in items],
    )


# --- CycloneDX -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CdxVerdict:
    state: CdxState
    justification: CdxJustification | None = None
    response: tuple[CdxResponse, ...] = ()
    detail: str | None = None


def cyclonedx_verdict(entry: Entry) -> CdxVerdict:
    """PeaRL status and justification → CycloneDX analysis."""
    text = entry.justification
    _, label = recorded_label(text)
    match entry.status:
        case "fixed":
            return CdxVerdict("resolved")
        case "not_affected":
            return CdxVerdict("not_affected", label or "code_not_reachable", detail=text or None)
        case "false_positive":
            return CdxVerdict("false_positive", label, detail=text or None)
        case "accepted_risk":
            return CdxVerdict("exploitable", None, ("will_not_fix",), f"risk accepted: {text}")
        case _:
            update: tuple[CdxResponse, ...] = ("update",) if entry.fixed_version else ()
            return CdxVerdict("in_triage", None, update, _pending_action(entry))


def vulnerability_source(vuln_id: str, tool: str) -> CdxSource:
    """Where an id is published (NVD, GitHub, OSV), else the scanner that reported it."""
    for prefix, name, url in _SOURCES:
        if vuln_id.upper().startswith(prefix):
            return CdxSource(name=name, url=url + vuln_id)
    return CdxSource(name=tool)


def cyclonedx_vulnerability(entry: Entry, project: str) -> CdxVulnerability:
    verdict = cyclonedx_verdict(entry)
    return CdxVulnerability(
        bom_ref=f"urn:uuid:{entry.finding_id}",
        id=entry.name,
        source=vulnerability_source(entry.name, entry.tool),
        references=[
            CdxReference(id=alias, source=vulnerability_source(alias, entry.tool))
            for alias in entry.aliases
        ],
        cwes=list(entry.cwes),
        analysis=CdxAnalysis(
            state=verdict.state,
            justification=verdict.justification,
            response=list(verdict.response),
            detail=verdict.detail,
        ),
        affects=[CdxAffects(ref=entry.component_ref or project)],
    )


def _components(items: Sequence[Entry]) -> list[CdxComponent]:
    by_ref: dict[str, CdxComponent] = {}
    for e in items:
        ref = e.component_ref
        if ref and e.package and ref not in by_ref:
            by_ref[ref] = CdxComponent(
                type="library", bom_ref=ref, name=e.package, version=e.version, purl=e.purl
            )
    return [by_ref[ref] for ref in sorted(by_ref)]


def cyclonedx_vex(project: Row, findings: Sequence[Row], author: str, now: str) -> CycloneDxVex:
    """A CycloneDX 1.5 VEX BOM of the project's findings (see the module docstring)."""
    items = entries(findings)
    ref = project_ref(project)
    return CycloneDxVex(
        serial_number=f"urn:uuid:{stable_id('vex', str(project['id']), 'cyclonedx')}",
        version=document_version(items),
        metadata=CdxMetadata(
            timestamp=now,
            authors=[CdxAuthor(name=author)],
            component=CdxComponent(
                type="application", bom_ref=ref, name=str(project.get("slug") or project["id"])
            ),
        ),
        components=_components(items),
        vulnerabilities=[cyclonedx_vulnerability(e, ref) for e in items],
    )
