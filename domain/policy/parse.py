"""Gate policy documents: parse YAML/JSON, validate, and report every error with its place.

Parsing validates the whole document and collects every error with its location
(`rules[2].max`) and, for YAML and JSON text, its 1-based line and column, so an author fixes a
policy in one round. Field types and constraints come from `contracts.policy` (checked with
msgspec one field at a time); the semantic rules msgspec cannot express are checked here.

YAML is read with YAML 1.2 core scalars: `17:30` stays a string (YAML 1.1 would read the
sexagesimal integer 1050), `yes`/`no`/`on`/`off` stay strings and `010` is ten.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Union, get_args, get_origin

import cel
import msgspec
import yaml

from contracts.policy import ClockTime, PolicyDocument, RuleId, Window
from domain.errors import InvalidInput

#: The top-level names a CEL `expression` rule may read (the evaluation's facts).
EXPRESSION_VARIABLES: frozenset[str] = frozenset(
    {"findings", "profile", "environment", "version", "scans", "tests", "approvals"}
)
#: Larger inputs are refused before parsing (a policy is a few kilobytes).
MAX_POLICY_BYTES = 512 * 1024
#: Bounds the work of expanding YAML aliases (a "billion laughs" document).
MAX_NODES = 100_000

PathPart = str | int
PolicyPath = tuple[PathPart, ...]


@dataclass(frozen=True)
class PolicyError:
    """One problem in a policy: where (`rules[2].max`, "" for the document) and what."""

    location: str
    line: int | None
    column: int | None
    message: str

    def __str__(self) -> str:
        where = self.location or "document"
        if self.line is not None:
            where += f" (line {self.line}, column {self.column})"
        return f"{where}: {self.message}"


class PolicyInvalid(InvalidInput):
    """A policy document was rejected; `errors` lists every problem found."""

    code = "invalid-policy"

    def __init__(self, errors: list[PolicyError], *, source: str = "policy") -> None:
        count = f"{len(errors)} error" + ("" if len(errors) == 1 else "s")
        name = "" if source == "policy" else f" {source}"
        super().__init__(f"invalid policy{name} ({count}): " + "; ".join(map(str, errors)))
        self.errors = errors
        self.source = source


@dataclass(frozen=True)
class _Issue:
    """An error found in the decoded data, before its path is mapped to a line and column."""

    path: PolicyPath
    message: str
    at_key: bool = False  # point at the mapping key (an unknown field), not at its value


# --- parsing --------------------------------------------------------------------------------


def parse_policy(text: str | bytes, *, source: str = "policy") -> PolicyDocument:
    """Decode and validate a YAML or JSON policy; raise `PolicyInvalid` listing every error."""
    text, problem = _decode(text)
    if problem:
        raise PolicyInvalid([_doc_error(problem)], source=source)
    data, node, errors = _load(text)
    if errors:
        raise PolicyInvalid(errors, source=source)
    issues, doc = _validate(data)
    if doc is not None:
        return doc
    if node is None:  # decoded as JSON: compose the same text as YAML only to find positions
        node = _compose_quietly(text)
    errors = [_locate(issue, node) for issue in issues]
    errors.sort(key=lambda e: (e.line is None, e.line or 0, e.column or 0))  # document order
    raise PolicyInvalid(errors, source=source)


def _decode(text: str | bytes) -> tuple[str, str | None]:
    """The text without a byte-order mark, or why it cannot be a policy."""
    if len(text) > MAX_POLICY_BYTES:
        return "", f"larger than {MAX_POLICY_BYTES} bytes"
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return "", f"not UTF-8 text ({exc.reason})"
    text = text.removeprefix("\ufeff")
    return text, None if text.strip() else "empty policy document"


def _doc_error(message: str, line: int | None = None, column: int | None = None) -> PolicyError:
    return PolicyError("", line, column, message)


def _load(text: str) -> tuple[Any, yaml.Node | None, list[PolicyError]]:
    """The decoded data and, for YAML, its node tree; or the syntax errors."""
    if text.lstrip().startswith("{"):
        duplicates: list[str] = []
        try:
            data = json.loads(text, object_pairs_hook=_pairs_hook(duplicates))
        except json.JSONDecodeError as exc:
            return None, None, [_doc_error(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno)]
        if not duplicates:
            return data, None, []
        # Duplicate keys: the YAML reader below reports each one with its position.
    try:  # the reader refuses unprintable characters (C0/C1 controls) as it is built
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        return None, None, [_doc_error(f"invalid YAML: {exc}")]
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None, [_doc_error("empty policy document")]
        errors = _check_nodes(node)
        if errors:
            return None, node, errors
        return loader.construct_document(node), node, []
    except yaml.MarkedYAMLError as exc:
        return None, None, [_yaml_error(exc)]
    except yaml.YAMLError as exc:
        return None, None, [_doc_error(f"invalid YAML: {exc}")]
    finally:
        loader.dispose()


def _pairs_hook(duplicates: list[str]) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            duplicates.append("dup")
        return result

    return hook


def _yaml_error(exc: yaml.MarkedYAMLError) -> PolicyError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "syntax error"
    if exc.context and exc.problem:
        problem = f"{exc.context}: {exc.problem}"
    if mark is None:
        return _doc_error(f"invalid YAML: {problem}")
    return _doc_error(f"invalid YAML: {problem}", mark.line + 1, mark.column + 1)


def _compose_quietly(text: str) -> yaml.Node | None:
    try:
        loader = _Loader(text)
    except yaml.YAMLError:
        return None
    try:
        return loader.get_single_node()
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema booleans, integers and floats."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if not tag.endswith((":bool", ":int", ":float"))]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value = str(self.construct_scalar(node)).replace("_", "")
        sign = -1 if value.startswith("-") else 1
        digits = value.lstrip("+-")
        if digits.startswith(("0x", "0o")):
            return sign * int(digits[2:], 16 if digits[1] == "x" else 8)
        return sign * int(digits)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _check_nodes(root: yaml.Node) -> list[PolicyError]:
    """Duplicate keys, recursive aliases and alias bombs, found before constructing anything."""
    errors: list[PolicyError] = []
    visits = 0
    stack: list[tuple[yaml.Node, PolicyPath, frozenset[int]]] = [(root, (), frozenset())]
    while stack:
        node, path, ancestors = stack.pop()
        visits += 1
        if visits > MAX_NODES:
            return [_doc_error(f"more than {MAX_NODES} values once aliases are expanded")]
        if id(node) in ancestors:
            mark = node.start_mark
            return [PolicyError(_location(path), mark.line + 1, mark.column + 1, "recursive alias")]
        inner = ancestors | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                if name in seen and name != "<<":
                    mark = key.start_mark
                    message = f"duplicate key '{name}'"
                    errors.append(
                        PolicyError(
                            _location((*path, name)), mark.line + 1, mark.column + 1, message
                        )
                    )
                seen.add(name)
                stack.append((value, (*path, name), inner))
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, (*path, i), inner) for i, item in enumerate(node.value)]
    return sorted(errors, key=lambda e: (e.line or 0, e.column or 0))


# --- structural validation (field by field, so every error is reported) ---------------------


_DOCUMENT_FIELDS = msgspec.structs.fields(PolicyDocument)
_FRIENDLY_PATTERNS = {
    get_args(RuleId)[1].pattern: "a rule id (1-64 characters of a-z, 0-9, '_', '.', '-', "
    "starting with a letter or digit)",
    get_args(ClockTime)[1].pattern: "a time of day HH:MM (00:00 to 23:59)",
}


def _validate(data: Any) -> tuple[list[_Issue], PolicyDocument | None]:
    """Every structural then semantic issue; the document only when there are none."""
    if not isinstance(data, dict):
        return [_Issue((), f"a policy must be a mapping, got {_type_name(data)}")], None
    issues = _check(data, PolicyDocument, ())
    rules = data.get("rules")
    if isinstance(rules, list):
        issues += _semantic_issues(rules, {issue.path for issue in issues})
    if issues:
        return issues, None
    try:
        return [], msgspec.convert(data, PolicyDocument)
    except msgspec.ValidationError as exc:  # a constraint the field-by-field check missed
        return [_issue_from(exc, ())], None


def _check(value: Any, tp: Any, path: PolicyPath) -> list[_Issue]:
    """Issues of `value` as `tp`: msgspec's first error, refined into one per bad field."""
    try:
        msgspec.convert(value, tp)
        return []
    except msgspec.ValidationError as exc:
        first = _issue_from(exc, path)
    inner, metas = _unwrap(tp)
    options = [o for o in _union_args(inner) if o is not types.NoneType]
    structs = [o for o in options if isinstance(o, type) and issubclass(o, msgspec.Struct)]
    if isinstance(value, dict) and structs:
        cls = structs[0] if len(structs) == 1 else None
        if cls is None:
            tag_field: str = structs[0].__struct_config__.tag_field  # type: ignore[assignment]
            if tag_field not in value:
                return [_Issue(path, f"missing required field '{tag_field}'")]
            tags = {o.__struct_config__.tag: o for o in structs}
            tag = value[tag_field]
            cls = tags.get(tag) if isinstance(tag, str) else None
            if cls is None:
                return [
                    _Issue(
                        (*path, tag_field),
                        f"unknown rule kind {tag!r} "
                        f"(expected one of: {', '.join(sorted(map(str, tags)))})",
                    )
                ]
        return _check_struct(value, cls, path) or [first]
    lists = [o for o in options if get_origin(o) is list]
    if isinstance(value, list) and len(options) == 1 and lists:
        (item,) = get_args(lists[0])
        shape = _check_shape(value, metas, path)
        items = [issue for i, v in enumerate(value) for issue in _check(v, item, (*path, i))]
        return [*shape, *items] or [first]
    return [first]


def _check_shape(value: list[Any], metas: tuple[Any, ...], path: PolicyPath) -> list[_Issue]:
    """The list's own constraints (its length), whatever its items."""
    if not metas:
        return []
    try:
        msgspec.convert(value, Annotated[list[Any], *metas])
        return []
    except msgspec.ValidationError as exc:
        return [_issue_from(exc, path)]


def _check_struct(
    data: dict[Any, Any], cls: type[msgspec.Struct], path: PolicyPath
) -> list[_Issue]:
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    tag_field = cls.__struct_config__.tag_field
    issues: list[_Issue] = []
    for key in data:
        if key == tag_field:
            continue
        if not isinstance(key, str):
            issues.append(_Issue((*path, str(key)), f"field names are strings, not {key!r}", True))
        elif key not in fields:
            hint = difflib.get_close_matches(key, list(fields), n=1)
            suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
            issues.append(_Issue((*path, key), f"unknown field '{key}'{suffix}", True))
    for name, info in fields.items():
        if name in data:
            issues += _check(data[name], info.type, (*path, name))
        elif info.required:
            issues.append(_Issue(path, f"missing required field '{name}'"))
    return issues


def _unwrap(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    if get_origin(tp) is Annotated:
        inner, *metas = get_args(tp)
        return inner, tuple(metas)
    return tp, ()


def _union_args(tp: Any) -> tuple[Any, ...]:
    if get_origin(tp) in (Union, types.UnionType):
        return tuple(_unwrap(arg)[0] for arg in get_args(tp))
    return (tp,)


_AT = re.compile(r" - at `(?:key` in `)?\$(?P<path>[^`]*)`$")
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _issue_from(exc: msgspec.ValidationError, base: PolicyPath) -> _Issue:
    """msgspec's "Expected `int` >= 0 - at `$.max`" as an issue at `base + (max,)`."""
    message = str(exc)
    path = base
    at = _AT.search(message)
    if at:
        message = message[: at.start()]
        parts = [name if name else int(index) for name, index in _PART.findall(at["path"])]
        path = (*base, *parts)
    for pattern, friendly in _FRIENDLY_PATTERNS.items():
        message = message.replace(f"`str` matching regex {pattern!r}", friendly)
    return _Issue(path, message.replace("`", ""))


def _type_name(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case _:
            return type(value).__name__


# --- semantic validation ----------------------------------------------------------------------


_BOUND = re.compile(
    r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,"
)
_STRING = re.compile(
    r"""[rRbB]*('''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")"""
)
_CEL_ERROR = re.compile(r"ERROR: <input>:(\d+:\d+): (.*)")


def _semantic_issues(rules: list[Any], bad: set[PolicyPath]) -> list[_Issue]:
    """What the types cannot say: unique ids, one approvals rule, coherent rules.

    Works on the raw rules so a rule with a type error still gets these checks; a value is
    only interpreted when no structural issue lies at or under its path (`bad`).
    """
    issues: list[_Issue] = []
    first_by_id: dict[str, int] = {}
    first_approvals: int | None = None
    for i, raw in enumerate(rules):
        if not isinstance(raw, dict):
            continue
        path: PolicyPath = ("rules", i)
        rule_id = raw.get("id")
        if isinstance(rule_id, str) and rule_id in first_by_id:
            message = f"duplicate rule id '{rule_id}' (also rules[{first_by_id[rule_id]}])"
            issues.append(_Issue((*path, "id"), message))
        elif isinstance(rule_id, str):
            first_by_id[rule_id] = i
        match raw.get("kind"):
            case "approvals" if first_approvals is not None:
                message = f"only one approvals rule is allowed (rules[{first_approvals}])"
                issues.append(_Issue((*path, "kind"), message))
            case "approvals":
                first_approvals = i
            case "tests" if raw.get("min_pass_rate") is None and raw.get("min_coverage") is None:
                issues.append(_Issue(path, "a tests rule needs min_pass_rate or min_coverage"))
            case "freeze" if isinstance(raw.get("windows"), list):
                for k, window in enumerate(raw["windows"]):
                    where = (*path, "windows", k)
                    if not _has_issue(bad, where):
                        issues += _window_issues(msgspec.convert(window, Window), where)
            case "expression" if not _has_issue(bad, (*path, "expr")) and "expr" in raw:
                problem = expression_problem(raw["expr"])
                if problem:
                    issues.append(_Issue((*path, "expr"), problem))
    return issues


def _has_issue(bad: set[PolicyPath], path: PolicyPath) -> bool:
    """Whether a structural issue lies at `path` or under it."""
    return any(p[: len(path)] == path for p in bad)


def _window_issues(window: Window, path: PolicyPath) -> list[_Issue]:
    absolute = window.start is not None or window.end is not None
    weekly = window.days is not None or window.from_ is not None or window.to is not None
    if absolute and weekly:
        return [
            _Issue(path, "a window is absolute (start, end) or weekly (days, from, to), not both")
        ]
    if not absolute and not weekly:
        return [_Issue(path, "a window needs start and end, or days, from and to")]
    if absolute:
        return _absolute_window_issues(window.start, window.end, path)
    missing = [
        name
        for name, value in (("days", window.days), ("from", window.from_), ("to", window.to))
        if value is None
    ]
    if missing:
        return [
            _Issue(path, f"a weekly window needs days, from and to (missing {', '.join(missing)})")
        ]
    issues: list[_Issue] = []
    if not window.days:
        issues.append(_Issue((*path, "days"), "a weekly window needs at least one day"))
    if window.from_ == window.to:
        issues.append(_Issue((*path, "to"), "to must differ from from"))
    return issues


def _absolute_window_issues(
    start: datetime | None, end: datetime | None, path: PolicyPath
) -> list[_Issue]:
    if start is None or end is None:
        return [_Issue(path, "an absolute window needs both start and end")]
    naive = [
        _Issue((*path, name), "needs a time zone (e.g. 2026-12-20T00:00:00Z)")
        for name, value in (("start", start), ("end", end))
        if value.utcoffset() is None
    ]
    if naive:
        return naive
    if start >= end:
        return [_Issue((*path, "end"), "end must be after start")]
    return []


def expression_problem(expr: str) -> str | None:
    """Why a CEL expression is not acceptable in a policy (syntax, unknown names), or None."""
    try:
        program = cel.compile(expr)
    except Exception as exc:  # the binding raises ValueError; be safe with native errors too
        found = _CEL_ERROR.findall(str(exc))
        detail = "; ".join(f"at {where}: {what}" for where, what in found) or str(exc)
        return f"invalid CEL expression {detail}"
    # `variables()` also lists names bound by comprehension macros (the x in all(x, …)).
    bound = set(_BOUND.findall(_STRING.sub("''", expr)))
    unknown = sorted(set(program.variables()) - EXPRESSION_VARIABLES - bound)
    if unknown:
        allowed = ", ".join(sorted(EXPRESSION_VARIABLES))
        return f"unknown variable(s) {', '.join(unknown)} (allowed: {allowed})"
    return None


# --- positions --------------------------------------------------------------------------------


def _locate(issue: _Issue, root: yaml.Node | None) -> PolicyError:
    """The issue at the line and column of its (nearest existing) YAML node."""
    location = _location(issue.path)
    if root is None:
        return PolicyError(location, None, None, issue.message)
    node = root
    for n, part in enumerate(issue.path):
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    last = n == len(issue.path) - 1
                    child = key if issue.at_key and last else value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if part < len(node.value) else None
        if child is None:
            break
        node = child
    mark = node.start_mark
    return PolicyError(location, mark.line + 1, mark.column + 1, issue.message)


def _location(path: PolicyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
