"""VEX export documents: OpenVEX 0.2.0 and CycloneDX 1.5 VEX, field names as the specs spell them.

Optional fields default to None (or empty) and are left out on encoding (`omit_defaults`), so a
document carries only what PeaRL knows.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct, field

OPENVEX_CONTEXT = "https://openvex.dev/ns/v0.2.0"
CYCLONEDX_SPEC_VERSION = "1.5"

OpenVexStatus = Literal["not_affected", "affected", "fixed", "under_investigation"]
OpenVexJustification = Literal[
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
]
CdxState = Literal[
    "resolved",
    "resolved_with_pedigree",
    "exploitable",
    "in_triage",
    "false_positive",
    "not_affected",
]
CdxJustification = Literal[
    "code_not_present",
    "code_not_reachable",
    "requires_configuration",
    "requires_dependency",
    "requires_environment",
    "protected_by_compiler",
    "protected_at_runtime",
    "protected_at_perimeter",
    "protected_by_mitigating_control",
]
CdxResponse = Literal["can_not_fix", "will_not_fix", "update", "rollback", "workaround_available"]


class VexStruct(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of every VEX struct: immutable, keyword-only, optional fields omitted when unset."""


# --- OpenVEX 0.2.0 ---------------------------------------------------------------------------


class OpenVexComponent(VexStruct, frozen=True, kw_only=True, omit_defaults=True):
    """A subcomponent of a product (here: the vulnerable package, by purl)."""

    id: str = field(name="@id")


class OpenVexProduct(VexStruct, frozen=True, kw_only=True, omit_defaults=True):
    """The product a statement is about (the project), with the affected subcomponents."""

    id: str = field(name="@id")
    subcomponents: list[OpenVexComponent] = []


class OpenVexVulnerability(VexStruct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    aliases: list[str] = []


class OpenVexStatement(VexStruct, frozen=True, kw_only=True, omit_defaults=True):
    """One assertion: products + vulnerability + status (+ why, or what to do)."""

    id: str | None = field(default=None, name="@id")
    vulnerability: OpenVexVulnerability
    products: list[OpenVexProduct]
    status: OpenVexStatus
    status_notes: str | None = None
    justification: OpenVexJustification | None = None
    impact_statement: str | None = None
    action_statement: str | None = None


class OpenVexDocument(VexStruct, frozen=True, kw_only=True, omit_defaults=False):
    """An OpenVEX document; every field here is required by the spec, so none is omitted."""

    context: str = field(default=OPENVEX_CONTEXT, name="@context")
    id: str = field(name="@id")
    author: str
    timestamp: str
    version: int
    tooling: str = "PeaRL"
    statements: list[OpenVexStatement]


# --- CycloneDX 1.5 VEX -----------------------------------------------------------------------


class CdxSource(VexStruct, frozen=True, kw_only=True, omit_defaults=True):
    name: str
    url: str | None = None


class CdxReference(VexStruct, frozen=True, kw_only=True, omit_defaults=True):
    """Another id the same vulnerability is known under (an alias)."""

    id: str
    source: CdxSource


class CdxAnalysis(VexStruct, frozen=True, kw_only=True, omit_defaults=True):
    state: CdxState
    justification: CdxJustification | None = None
    response: list[CdxResponse] = []
    detail: str | None = None


class CdxAffects(VexStruct, frozen=True, kw_only=True, omit_defaults=True):
    ref: str


class CdxVulnerability(VexStruct, frozen=True, kw_only=True, omit_defaults=True):
    bom_ref: str = field(name="bom-ref")
    id: str
    source: CdxSource
    references: list[CdxReference] = []
    cwes: list[int] = []
    analysis: CdxAnalysis
    affects: list[CdxAffects]


class CdxComponent(VexStruct, frozen=True, kw_only=True, omit_defaults=True):
    type: Literal["application", "library"]
    bom_ref: str = field(name="bom-ref")
    name: str
    version: str | None = None
    purl: str | None = None


class CdxAuthor(VexStruct, frozen=True, kw_only=True, omit_defaults=True):
    name: str


class CdxMetadata(VexStruct, frozen=True, kw_only=True, omit_defaults=True):
    timestamp: str
    authors: list[CdxAuthor] = []
    component: CdxComponent


class CycloneDxVex(VexStruct, frozen=True, kw_only=True, omit_defaults=False):
    """A CycloneDX 1.5 BOM used as a VEX: the project, the affected packages, their analysis."""

    bom_format: Literal["CycloneDX"] = field(default="CycloneDX", name="bomFormat")
    spec_version: str = field(default=CYCLONEDX_SPEC_VERSION, name="specVersion")
    serial_number: str = field(name="serialNumber")
    version: int
    metadata: CdxMetadata
    components: list[CdxComponent] = []
    vulnerabilities: list[CdxVulnerability] = []
