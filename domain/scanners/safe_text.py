"""Scanner text made storable: characters PostgreSQL or JSON cannot carry are escaped visibly.

A report is evidence, so a finding whose message, snippet or path holds such a character is
kept, with each of them written as the six characters `\\uXXXX` (lower-case hex, as JSON
spells it): NUL (which PostgreSQL text and jsonb cannot hold), the other C0 controls but tab,
line feed and carriage return, DEL, the C1 controls, and lone surrogates (which no UTF-8
encoder accepts). Every parser's drafts pass through `Sanitizer.drafts` before they are
fingerprinted, so clean reports keep their fingerprints and no parser can forget it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import msgspec

from contracts.text import visible
from domain.scanners.model import Draft

UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_FIELDS = Draft.__struct_fields__


def escape(value: str) -> str:
    """Return value with every unsafe character written as `\\uXXXX` (unchanged when clean)."""
    return UNSAFE.sub(visible, value) if UNSAFE.search(value) else value


def is_safe(value: str) -> bool:
    """Return True when PostgreSQL text, jsonb and JSON can all carry value as it is."""
    return UNSAFE.search(value) is None


class Sanitizer:
    """Escapes the unsafe characters of a report's drafts and counts the records it changed."""

    def __init__(self) -> None:
        self.count = 0

    def drafts(self, drafts: Iterable[Draft]) -> Iterator[Draft]:
        """Yield each draft with its text fields made safe, counting those that were not."""
        for draft in drafts:
            if _dirty(draft):
                _clean(draft)
                self.count += 1
            yield draft

    def text(self, value: str | None) -> str | None:
        """Make one report-level text (tool name, version) safe, counting it when it was not."""
        if value is None or is_safe(value):
            return value
        self.count += 1
        return escape(value)


def _texts(values: tuple[object, ...]) -> Iterator[str]:
    """Yield the strings among a draft's field values, inside tuples too."""
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, tuple):
            yield from (part for part in value if isinstance(part, str))


def _dirty(draft: Draft) -> bool:
    """Return True when any text of the draft holds an unsafe character (one regex search)."""
    return UNSAFE.search("\n".join(_texts(msgspec.structs.astuple(draft)))) is not None


def _clean(draft: Draft) -> None:
    """Escape the unsafe characters of every text field of the draft, in place."""
    for name in _FIELDS:
        value = getattr(draft, name)
        if isinstance(value, str):
            setattr(draft, name, escape(value))
        elif isinstance(value, tuple):
            setattr(
                draft,
                name,
                tuple(escape(part) if isinstance(part, str) else part for part in value),
            )
