"""Pure helpers shared by the format modules: safe field access, normalization, ids and hashes."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar
from urllib.parse import quote, unquote

from domain.errors import ReportError

T = TypeVar("T")
JsonObject = dict[str, object]

_CWE = re.compile(r"\bcwe[-_/ ]?0*(\d+)", re.IGNORECASE)
_CVE = re.compile(r"\bCVE-\d{4}-\d{4,}\b", re.IGNORECASE)
_GHSA = re.compile(r"\bGHSA(?:-[0-9a-z]{4}){3}\b", re.IGNORECASE)
_TITLE_LIMIT = 200

LEVELS: Mapping[str, str] = {
    "critical": "critical",
    "high": "high",
    "medium": "medium",
    "moderate": "medium",
    "low": "low",
    "info": "info",
    "informational": "info",
    "negligible": "info",
    "none": "info",
}


def get(obj: object, *path: str | int) -> object:
    """Follow dict keys / list indexes through decoded JSON; None when any step is missing."""
    for step in path:
        if isinstance(obj, dict):
            obj = obj.get(step)
        elif isinstance(obj, list) and isinstance(step, int) and -len(obj) <= step < len(obj):
            obj = obj[step]
        else:
            return None
    return obj


def text(obj: object, *path: str | int) -> str | None:
    """Return the stripped string (or number, as text) at path; None when absent or blank."""
    value = get(obj, *path) if path else obj
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def integer(obj: object, *path: str | int) -> int | None:
    """Return the non-negative integer at path (digit strings accepted); None otherwise."""
    value = get(obj, *path)
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and value >= 0 else None


def number(obj: object, *path: str | int) -> float | None:
    """Return the number at path (numeric strings accepted); None otherwise."""
    value = get(obj, *path)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def listing(obj: object, *path: str | int) -> list[object]:
    """Return the list at path, or an empty list when absent or not a list."""
    value = get(obj, *path)
    return value if isinstance(value, list) else []


def mapping(obj: object, *path: str | int) -> JsonObject:
    """Return the object at path, or an empty dict when absent or not an object."""
    value = get(obj, *path)
    return value if isinstance(value, dict) else {}


def texts(values: Iterable[object]) -> list[str]:
    """Keep the non-blank strings of an iterable, stripped."""
    return [value.strip() for value in values if isinstance(value, str) and value.strip()]


def require_object(value: object, what: str) -> JsonObject:
    """Return value as a JSON object, or reject the report naming the offending element."""
    if not isinstance(value, dict):
        raise ReportError(f"The report is malformed: {what} is not a JSON object.")
    return value


def each(values: Iterable[object], what: str, convert: Callable[[JsonObject], T]) -> Iterator[T]:
    """Convert every element, rejecting the report with the element's position on failure."""
    for position, value in enumerate(values, 1):
        element = require_object(value, f"{what} #{position}")
        try:
            yield convert(element)
        except ReportError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ReportError(
                f"The report is malformed: {what} #{position} could not be read ({exc!r})."
            ) from exc


def norm_path(path: str | None) -> str | None:
    """Drop every leading "./" and "/" so the same file reads the same across tools."""
    if not path:
        return None
    while path.startswith(("./", "/")):
        path = path[2:] if path.startswith("./") else path[1:]
    return path or None


def collapse(value: str) -> str:
    """Collapse every whitespace run to one space so reformatting does not change a key."""
    return " ".join(value.split())


def sha256(value: str) -> str:
    """Return the hex SHA-256 of a UTF-8 string."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def canonical_hash(parts: Iterable[object]) -> str:
    """Hash a list of parts via canonical JSON, so no two part lists can ever collide."""
    return sha256(json.dumps(list(parts), ensure_ascii=False, separators=(",", ":")))


def code_key(producer: str | None, snippet: str | None, message: str) -> str:
    """Choose a finding's line-independent key: tool fingerprint, else snippet, else message."""
    if producer:
        return f"producer:{producer}"
    if snippet and collapse(snippet):
        return f"snippet:{sha256(collapse(snippet))}"
    return f"message:{sha256(collapse(message))}"


def first_line(value: str | None, limit: int = _TITLE_LIMIT) -> str:
    """Return the first non-blank line of a text, shortened to make a title."""
    for line in (value or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def level(label: object, table: Mapping[str, str] = LEVELS) -> str | None:
    """Map a tool's severity word to PeaRL's vocabulary through table; None when unknown."""
    if not isinstance(label, str):
        return None
    return table.get(label.strip().lower())


def cvss(score: object) -> str | None:
    """Map a CVSS base score: >=9 critical, >=7 high, >=4 medium, >0 low, 0 info."""
    value = number(score)
    if value is None or not 0 <= value <= 10:
        return None
    for floor, name in ((9.0, "critical"), (7.0, "high"), (4.0, "medium")):
        if value >= floor:
            return name
    return "low" if value > 0 else "info"


def cwes(*sources: object) -> tuple[str, ...]:
    """Collect CWE ids ("CWE-79") from strings, integers and lists of them, in order."""
    found: list[str] = []
    for value in _flatten(sources):
        if isinstance(value, int) and not isinstance(value, bool):
            found.append(sys.intern(f"CWE-{value}"))
        elif isinstance(value, str):
            found.extend(sys.intern(f"CWE-{int(match)}") for match in _CWE.findall(value))
    return tuple(dict.fromkeys(found))


def vuln_ids(*sources: object) -> tuple[str, ...]:
    """Collect CVE and GHSA ids from strings and lists: CVEs first, then GHSAs, each sorted."""
    cves: set[str] = set()
    ghsas: set[str] = set()
    for value in _flatten(sources):
        if isinstance(value, str):
            cves.update(match.upper() for match in _CVE.findall(value))
            ghsas.update("GHSA" + match[4:].lower() for match in _GHSA.findall(value))
    return (*sorted(cves), *sorted(ghsas))


def canonical_vuln(primary: str | None, ids: tuple[str, ...]) -> str | None:
    """Pick the id that names a vulnerability across tools: a CVE, else a GHSA, else primary."""
    if ids:
        return ids[0]
    return primary.upper() if primary else None


def _flatten(values: Iterable[object]) -> Iterator[object]:
    """Yield scalars from nested lists/tuples (one JSON value may be a string or a list)."""
    for value in values:
        if isinstance(value, list | tuple):
            yield from _flatten(value)
        else:
            yield value


PURL_TYPES: Mapping[str, str] = {
    "pip": "pypi",
    "pipenv": "pypi",
    "poetry": "pypi",
    "uv": "pypi",
    "python-pkg": "pypi",
    "python": "pypi",
    "pypi": "pypi",
    "npm": "npm",
    "yarn": "npm",
    "pnpm": "npm",
    "node-pkg": "npm",
    "javascript": "npm",
    "gomod": "golang",
    "gobinary": "golang",
    "golang": "golang",
    "gomodules": "golang",
    "go-module": "golang",
    "cargo": "cargo",
    "rust-crate": "cargo",
    "rustbinary": "cargo",
    "composer": "composer",
    "php-composer": "composer",
    "bundler": "gem",
    "gemspec": "gem",
    "rubygems": "gem",
    "gem": "gem",
    "jar": "maven",
    "pom": "maven",
    "gradle": "maven",
    "maven": "maven",
    "java-archive": "maven",
    "nuget": "nuget",
    "dotnet-core": "nuget",
    "dotnet": "nuget",
    "cocoapods": "cocoapods",
    "hex": "hex",
    "pub": "pub",
    "conan": "conan",
    "swift": "swift",
    "alpine": "apk",
    "apk": "apk",
    "wolfi": "apk",
    "chainguard": "apk",
    "debian": "deb",
    "ubuntu": "deb",
    "deb": "deb",
    "redhat": "rpm",
    "centos": "rpm",
    "rocky": "rpm",
    "alma": "rpm",
    "amazon": "rpm",
    "oracle": "rpm",
    "fedora": "rpm",
    "photon": "rpm",
    "suse": "rpm",
    "opensuse": "rpm",
    "rpm": "rpm",
}


def purl(ecosystem: str | None, name: str | None, version: str | None) -> str | None:
    """Build a package URL (pkg:pypi/django@1.2) from an ecosystem word, name and version."""
    kind = PURL_TYPES.get((ecosystem or "").strip().lower())
    if not kind or not name:
        return None
    if kind == "pypi":
        name = re.sub(r"[-_.]+", "-", name).lower()
    elif kind == "maven":
        name = name.replace(":", "/", 1)
    path = quote(name, safe="/") if kind in ("maven", "golang", "npm") else quote(name, safe="")
    return f"pkg:{kind}/{path}" + (f"@{quote(version, safe='')}" if version else "")


def purl_parts(value: str | None) -> tuple[str | None, str | None]:
    """Split a purl into its (name, version), ignoring type, namespace and qualifiers."""
    if not value or not value.startswith("pkg:"):
        return None, None
    core = value.split("?", 1)[0].split("#", 1)[0]
    path, _, version = core.rpartition("@") if "@" in core.rsplit("/", 1)[-1] else (core, "", "")
    name = unquote(path.rsplit("/", 1)[-1]) if "/" in path else None
    return name, unquote(version) or None
