"""SARIF 2.1.0 from any producer: one finding per runs[].results[] entry, streamed."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from urllib.parse import unquote

import msgspec

from domain.errors import ReportError
from domain.scanners.common import (
    JsonObject,
    code_key,
    cvss,
    cwes,
    each,
    first_line,
    get,
    integer,
    level,
    listing,
    mapping,
    norm_path,
    text,
    texts,
    vuln_ids,
)
from domain.scanners.jsonstream import HeadInfo, JsonScan, Source
from domain.scanners.model import Draft, RawReport, ScannerFormat

NAME = "sarif"
SUPPORTED_VERSION = "2.1.0"
_RESULTS = "runs.item.results.item"
_RUN = "runs.item"
_DRIVER = "runs.item.tool.driver"
_META = (
    "version",
    f"{_DRIVER}.name",
    f"{_DRIVER}.version",
    f"{_DRIVER}.semanticVersion",
    f"{_DRIVER}.rules.item",
    "runs.item.tool.extensions.item.rules.item",
)
_LEVELS = {"error": "high", "warning": "medium", "note": "low", "none": "info"}
_NOT_FINDINGS = frozenset({"pass", "notApplicable"})
_IGNORED_FINGERPRINTS = frozenset({"requires login"})
_KNOWN_TOOLS = ("semgrep", "bandit", "checkov", "trivy", "grype", "gitleaks", "snyk", "codeql")
_SECRET_TOOLS = frozenset({"gitleaks", "trufflehog", "detect-secrets", "ggshield", "talisman"})
_CONFIG_TOOLS = frozenset(
    {"checkov", "tfsec", "kics", "terrascan", "hadolint", "kube-linter", "kubesec", "tflint"}
)
_DEPENDENCY_TOOLS = frozenset({"grype", "snyk", "pip-audit", "osv-scanner", "dependency-check"})
_CONFIDENCE_TAG = re.compile(r"^(high|medium|low) confidence$", re.IGNORECASE)
_PACKAGE_PATTERNS = (
    re.compile(r"Package:\s*(?P<name>\S+)"),
    re.compile(r"package:\s*(?P<name>[^\s,]+),\s*version\s+(?P<version>[^\s,]+)"),
)
_INSTALLED = re.compile(r"Installed Version:\s*(\S+)")
_FIXED = re.compile(r"Fixed Version:\s*([^\n]+)")


class _Result(msgspec.Struct, array_like=True):
    """The parts of one SARIF result kept until its run's rules are known (maybe on disk)."""

    rule_id: str | None
    rule_index: int | None
    level: str | None
    message: str
    message_id: str | None
    arguments: tuple[str, ...]
    path: str | None
    line: int | None
    end_line: int | None
    key: str | None
    label: str | None
    score: str | None
    confidence: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _RuleFacts:
    """What a rule contributes to each of its results, worked out once per rule."""

    tags: tuple[str, ...]
    kind: str
    cwe: tuple[str, ...]
    cve: tuple[str, ...]
    score: str | None
    default_level: str
    short: str | None


@dataclass(slots=True)
class _Run:
    """A run's tool identity and rule metadata, looked up by id and by index."""

    tool: str
    version: str | None
    rules: dict[str, JsonObject] = field(default_factory=dict)
    by_index: list[JsonObject] = field(default_factory=list)
    known: dict[str, _RuleFacts] = field(default_factory=dict)

    def facts(self, rule_id: str, rule: JsonObject) -> _RuleFacts:
        """Return the cached facts of a rule, computing them on first use."""
        found = self.known.get(rule_id)
        if found is None:
            found = self.known[rule_id] = _rule_facts(self.tool, rule_id, rule)
        return found

    def rule(self, result: _Result) -> JsonObject:
        """Return the rule a result refers to (by id, else by ruleIndex), or an empty dict."""
        if result.rule_id and result.rule_id in self.rules:
            return self.rules[result.rule_id]
        index = result.rule_index
        if index is not None and index < len(self.by_index):
            return self.by_index[index]
        return {}


def sniff(head: HeadInfo) -> bool:
    """Recognise SARIF by its top-level `runs` array or a SARIF `$schema`."""
    schema = head.values.get("$schema")
    has_schema = isinstance(schema, str) and "sarif" in schema.lower()
    return head.root == "object" and ("runs" in head.top or has_schema)


def parse(source: Source) -> RawReport:
    """Stream every run's results; resolve rules and tool names once the whole log was read."""
    _check_version(source.info.values.get("version"), required=False)
    scan = source.scan(_RESULTS, group=_RUN, meta=_META)
    pending = source.store(tuple[int, _Result])
    for ordinal, result in enumerate(each(scan.items(), "SARIF result", _read_result)):
        if result is not None:
            pending.append((ordinal, result))
    _check_version(scan.first("version"), required=True)
    runs = [_run(scan, group) for group in range(scan.groups)]
    drafts = (_draft(result, runs[scan.group_of(ordinal)]) for ordinal, result in pending.drain())
    first = runs[0] if runs else _Run("sarif", None)
    return RawReport(tool=first.tool, tool_version=first.version, drafts=drafts)


def _check_version(version: object, *, required: bool) -> None:
    """Reject any SARIF log whose version is not 2.1.0 (or, when required, that has none)."""
    if version is None and not required:
        return
    if version != SUPPORTED_VERSION:
        shown = "no version" if version is None else f"version {version!r}"
        raise ReportError(
            f"The SARIF log has {shown}; only SARIF {SUPPORTED_VERSION} is supported."
        )


def tool_name(raw: str | None) -> str:
    """Lower-case a SARIF driver name, folding "Semgrep OSS"-style names to the tool's name."""
    name = (raw or "").strip().lower()
    if not name:
        return "sarif"
    head = name.split()[0]
    return head if head in _KNOWN_TOOLS else name


def _run(scan: JsonScan, group: int) -> _Run:
    """Assemble one run's tool name, version and rules from the captured side values."""
    run = _Run(
        tool=tool_name(text(scan.first(f"{_DRIVER}.name", group))),
        version=text(scan.first(f"{_DRIVER}.version", group))
        or text(scan.first(f"{_DRIVER}.semanticVersion", group)),
    )
    for rule in scan.values(f"{_DRIVER}.rules.item", group):
        rule = mapping(rule)
        run.by_index.append(rule)
        _register(run, rule)
    for rule in scan.values("runs.item.tool.extensions.item.rules.item", group):
        _register(run, mapping(rule))
    return run


def _register(run: _Run, rule: JsonObject) -> None:
    """Index a rule by its id (first definition wins)."""
    rule_id = text(rule, "id")
    if rule_id and rule_id not in run.rules:
        run.rules[rule_id] = rule


def _read_result(result: JsonObject) -> _Result | None:
    """Extract what a result needs later; None for results that are not failures (kind pass)."""
    if text(result, "kind") in _NOT_FINDINGS:
        return None
    location = mapping(result, "locations", 0, "physicalLocation")
    region = mapping(location, "region")
    line = integer(region, "startLine")
    props = mapping(result, "properties")
    producer = _producer(result)
    snippet = text(region, "snippet", "text")
    return _Result(
        rule_id=text(result, "ruleId") or text(result, "rule", "id"),
        rule_index=_rule_index(result),
        level=text(result, "level"),
        message=sys.intern(_result_message(result)),
        message_id=text(result, "message", "id"),
        arguments=tuple(str(arg) for arg in listing(result, "message", "arguments")),
        path=_path(text(location, "artifactLocation", "uri")),
        line=line,
        end_line=integer(region, "endLine") or line,
        key=code_key(producer, snippet, "") if producer or snippet else None,
        label=text(props, "issue_severity") or text(props, "severity"),
        score=text(props, "security-severity"),
        confidence=text(props, "issue_confidence") or text(props, "confidence"),
        tags=tuple(texts(listing(props, "tags"))),
    )


def _result_message(result: JsonObject) -> str:
    """Return a result's own message text (markdown when there is no plain text)."""
    return text(result, "message", "text") or text(result, "message", "markdown") or ""


def _rule_index(result: JsonObject) -> int | None:
    """Return the result's ruleIndex (0 is a valid index), from either place SARIF allows."""
    index = integer(result, "ruleIndex")
    return index if index is not None else integer(result, "rule", "index")


def _path(uri: str | None) -> str | None:
    """Turn an artifact URI into a file path: decoded, file:// dropped, normalized, shared."""
    if uri is None:
        return None
    uri = unquote(uri)
    if uri.lower().startswith("file://"):
        uri = uri[len("file://") :]
    path = norm_path(uri)
    return sys.intern(path) if path else None


def _producer(result: JsonObject) -> str | None:
    """Return the producer's own fingerprint (full before partial), ignoring placeholders."""
    for name in ("fingerprints", "partialFingerprints"):
        values = mapping(result, name)
        stable = sorted(
            f"{key}={value.strip()}"
            for key, value in values.items()
            if isinstance(value, str)
            and value.strip()
            and value.strip().lower() not in _IGNORED_FINGERPRINTS
        )
        if stable:
            return f"{name}:" + "|".join(stable)
    return None


def _rule_facts(tool: str, rule_id: str, rule: JsonObject) -> _RuleFacts:
    """Derive a rule's tags, kind, CWE/CVE ids, severity defaults and informative title."""
    tags = tuple(texts(listing(rule, "properties", "tags")))
    short = text(rule, "shortDescription", "text")
    return _RuleFacts(
        tags=tags,
        kind=_kind(tool, rule_id, tags),
        cwe=cwes(tags, get(rule, "properties", "cwe"), _related_cwes(rule)),
        cve=vuln_ids(rule_id, tags),
        score=cvss(text(rule, "properties", "security-severity")),
        default_level=text(rule, "defaultConfiguration", "level") or "warning",
        short=first_line(short) if short and rule_id not in short else None,
    )


def _draft(result: _Result, run: _Run) -> Draft:
    """Combine a result with its rule and run into a draft finding."""
    rule = run.rule(result)
    rule_id = result.rule_id or text(rule, "id") or "unknown"
    facts = run.facts(rule_id, rule)
    if result.tags:
        tags = (*result.tags, *facts.tags)
        facts = replace(
            facts,
            tags=tags,
            kind=_kind(run.tool, rule_id, tags),
            cwe=cwes(tags, facts.cwe),
            cve=vuln_ids(rule_id, tags),
        )
    message = _message(result, rule) or rule_id
    draft = Draft(
        tool=run.tool,
        rule_id=rule_id,
        title=facts.short or first_line(message) or rule_id,
        severity=_severity(result, facts),
        kind=facts.kind,
        message=message,
        key=result.key or code_key(None, None, message),
        confidence=_confidence(result, facts.tags),
        path=result.path,
        line=result.line,
        end_line=result.end_line,
        cwe=facts.cwe,
        cve=facts.cve,
    )
    if facts.kind == "dependency":
        _add_package(draft, message)
    return draft


def _message(result: _Result, rule: JsonObject) -> str:
    """Return the result's message, expanding a rule messageStrings template when needed."""
    if result.message:
        return result.message
    template = text(rule, "messageStrings", result.message_id or "", "text") or ""
    for index, argument in enumerate(result.arguments):
        template = template.replace(f"{{{index}}}", argument)
    return template


def _severity(result: _Result, facts: _RuleFacts) -> str:
    """Map security-severity (CVSS-like), then a tool severity property, then the SARIF level."""
    named = cvss(result.score) or facts.score or level(result.label)
    if named:
        return named
    return _LEVELS.get(result.level or facts.default_level, "medium")


def _confidence(result: _Result, tags: tuple[str, ...]) -> str | None:
    """Return the result's confidence, or one written as a "LOW CONFIDENCE" style tag."""
    if result.confidence:
        return result.confidence.lower()
    for tag in tags:
        match = _CONFIDENCE_TAG.match(tag)
        if match:
            return match.group(1).lower()
    return None


def _related_cwes(rule: JsonObject) -> list[str]:
    """Return CWE ids a rule declares through taxonomy relationships (toolComponent "CWE")."""
    found: list[str] = []
    for relation in listing(rule, "relationships"):
        if (text(relation, "target", "toolComponent", "name") or "").upper() == "CWE":
            found.extend(f"CWE-{value}" for value in [text(relation, "target", "id")] if value)
    return found


def _kind(tool: str, rule_id: str, tags: tuple[str, ...]) -> str:
    """Infer code/dependency/secret/config from the producer, the rule id and its tags."""
    words = {tag.lower() for tag in tags}
    if tool in _SECRET_TOOLS or words & {"secret", "secrets"} or rule_id.startswith("CKV_SECRET"):
        return "secret"
    if tool in _DEPENDENCY_TOOLS or vuln_ids(rule_id):
        return "dependency"
    if tool in _CONFIG_TOOLS or words & {"misconfiguration", "iac"}:
        return "config"
    return "code"


def _add_package(draft: Draft, message: str) -> None:
    """Fill package fields from a vulnerability message (Trivy and Grype SARIF wording)."""
    for pattern in _PACKAGE_PATTERNS:
        match = pattern.search(message)
        if match:
            groups = match.groupdict()
            draft.package = draft.package_name = groups["name"]
            draft.installed_version = groups.get("version")
            break
    installed = _INSTALLED.search(message)
    fixed = _FIXED.search(message)
    if installed:
        draft.installed_version = installed.group(1)
    if fixed:
        draft.fixed_version = fixed.group(1).strip() or None
    draft.vuln_id = draft.cve[0] if draft.cve else draft.rule_id


FORMAT = ScannerFormat(NAME, sniff, parse)
