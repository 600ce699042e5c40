"""Whole-report finishing: drop duplicate results, then give each finding a stable fingerprint.

One implementation serves both ways of parsing. A Fingerprinter sees every draft of a report
once, in report order, and keeps only fixed-size facts about it (two 16-byte hashes, the line
and end line: about 50 bytes a draft); its Marks then say which drafts to keep and each kept
code finding's occurrence index. parse_report applies them to its in-memory drafts, while
stream_report applies them batch by batch to drafts read back from a spill file.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import msgspec

from domain.scanners.common import canonical_hash
from domain.scanners.model import Draft, NormalizedFinding

_CODE_SCHEME = "pearl-finding-v1"
_DEPENDENCY_SCHEME = "pearl-dependency-v1"
_DIGEST = 16
_encode = msgspec.msgpack.Encoder().encode


def finalize(drafts: Iterable[Draft]) -> tuple[NormalizedFinding, ...]:
    """De-duplicate a report's drafts and freeze them with fingerprints, in report order."""
    kept = list(drafts)
    keeper = Fingerprinter()
    for draft in kept:
        keeper.add(draft)
    return tuple(keeper.finish().apply(kept))


def dependency_key(draft: Draft) -> tuple[str, str, str] | None:
    """Return (vulnerability, package, installed version) for a package finding, else None."""
    if draft.kind != "dependency" or not draft.vuln_id or not draft.package_name:
        return None
    return draft.vuln_id.upper(), draft.package_name.lower(), draft.installed_version or ""


def fingerprint(draft: Draft, occurrence: int) -> str:
    """Hash a finding's base key plus its occurrence index among equal keys (package: no index).

    The line number never enters the hash, so moving code keeps the fingerprint; the occurrence
    index only separates identical snippets matched at several places in one file.
    """
    dependency = dependency_key(draft)
    if dependency is not None:
        return canonical_hash([_DEPENDENCY_SCHEME, *dependency])
    return canonical_hash([_CODE_SCHEME, *_base(draft), occurrence])


def _base(draft: Draft) -> tuple[str, str, str, str]:
    """Return what a code finding's fingerprint hashes besides its occurrence index."""
    return draft.tool, draft.rule_id, draft.path or "", draft.key


def _identity(draft: Draft) -> tuple[object, ...]:
    """Return what makes two results the same finding: package vuln, or rule+path+line+key."""
    dependency = dependency_key(draft)
    if dependency is not None:
        return ("dependency", *dependency)
    line = None if draft.line is None else str(draft.line)
    return ("finding", draft.tool, draft.rule_id, draft.path, line, draft.key)


def _digest(parts: tuple[object, ...]) -> bytes:
    """Hash a tuple of strings/None to 16 bytes (msgpack keeps str and None apart)."""
    return hashlib.blake2b(_encode(parts), digest_size=_DIGEST).digest()


class _Column:
    """A column of integers: a compact array, turned into a list if one exceeds 64 bits."""

    def __init__(self) -> None:
        self.values: array[int] | list[int] = array("q")

    def append(self, value: int) -> None:
        """Add a value, widening the storage when it does not fit 64 bits."""
        try:
            self.values.append(value)
        except OverflowError:
            self.values = list(self.values)
            self.values.append(value)


class Fingerprinter:
    """Collects the compact facts de-duplication and occurrence indexes need, draft by draft."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Start (or, once finished, free) the collected facts."""
        self._identities = bytearray()
        self._bases = bytearray()
        self._lines = _Column()
        self._ends = _Column()
        self._code = bytearray()
        self.count = 0

    def add(self, draft: Draft) -> None:
        """Note the next draft of the report (drafts must come in report order)."""
        self.count += 1
        self._identities += _digest(_identity(draft))
        code = dependency_key(draft) is None
        self._code.append(code)
        self._bases += _digest(_base(draft)) if code else bytes(_DIGEST)
        self._lines.append(draft.line or 0)
        self._ends.append(draft.end_line or 0)

    def finish(self) -> Marks:
        """Decide which drafts are kept and number equal code keys; frees the collected facts."""
        keep = self._first_of_each()
        occurrence = self._occurrences(keep)
        self._reset()
        return Marks(keep, occurrence, sum(keep))

    def _first_of_each(self) -> bytearray:
        """Mark the first draft of every identity (tools sometimes report one result twice)."""
        count, identities = self.count, self._identities
        shift = max(count, 1).bit_length()
        keys = sorted(
            (int.from_bytes(identities[i * _DIGEST : (i + 1) * _DIGEST]) << shift) | i
            for i in range(count)
        )
        keep = bytearray(count)
        previous = -1
        for key in keys:
            if key >> shift != previous:
                previous = key >> shift
                keep[key & ((1 << shift) - 1)] = 1
        return keep

    def _occurrences(self, keep: bytearray) -> array[int]:
        """Rank each kept code finding among those with its base key, by (line, end line, order)."""
        count, lines, ends, bases = self.count, self._lines.values, self._ends.values, self._bases
        occurrence = array("q", bytes(8 * count))
        chosen = [i for i in range(count) if keep[i] and self._code[i]]
        if not chosen:
            return occurrence
        low_line, low_end = min(lines), min(ends)
        line_radix, end_radix = max(lines) - low_line + 1, max(ends) - low_end + 1
        order_radix = count
        group_radix = line_radix * end_radix * order_radix
        keys = sorted(
            (
                (
                    int.from_bytes(bases[i * _DIGEST : (i + 1) * _DIGEST]) * line_radix
                    + lines[i]
                    - low_line
                )
                * end_radix
                + ends[i]
                - low_end
            )
            * order_radix
            + i
            for i in chosen
        )
        del chosen
        previous, rank = -1, 0
        for key in keys:
            group = key // group_radix
            rank = rank + 1 if group == previous else 0
            previous = group
            occurrence[key % order_radix] = rank
        return occurrence


@dataclass(frozen=True, slots=True)
class Marks:
    """The outcome of fingerprinting, in a few bytes per draft of the report."""

    keep: bytearray
    occurrence: array[int]
    count: int

    def apply(self, drafts: Iterable[Draft], start: int = 0) -> Iterator[NormalizedFinding]:
        """Freeze the kept drafts among `drafts` (the report's drafts from index `start` on)."""
        keep, occurrence = self.keep, self.occurrence
        for index, draft in enumerate(drafts, start):
            if keep[index]:
                yield draft.finish(fingerprint(draft, occurrence[index]))
