"""Which characters text may hold, checked where input enters (HTTP, NATS, MCP, CLI).

Two characters can never be stored: NUL (PostgreSQL `text` and `jsonb` cannot hold it) and
lone surrogates (not encodable as UTF-8, so not as JSON). On top of that, what a person types
on one line (identifiers, names, titles, paths) holds no control character at all, and free
text (messages, reasons, justifications, comments) holds none but tab, newline and carriage
return. Scanner reports are evidence and are not refused here: their parsers escape what
cannot be stored (`domain/scanners/`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from msgspec import Meta, Struct

#: One line a person typed: no C0 or C1 control character, no lone surrogate.
LINE = Meta(pattern=r"^[^\x00-\x1f\x7f-\x9f\ud800-\udfff]*(?![\s\S])")
#: Free text: like LINE, but tab, newline and carriage return are allowed.
PROSE = Meta(pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]*(?![\s\S])")

#: What no stored string may contain.
UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
#: Control characters and lone surrogates: refused in paths and query strings.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def unstorable_at(value: Any, where: str = "$") -> str | None:
    """The location of the first string (or key) in `value` that cannot be stored, or None."""
    if isinstance(value, str):
        return where if UNSTORABLE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and UNSTORABLE.search(key):
                return f"{where} (a key)"
            found = unstorable_at(item, f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            found = unstorable_at(item, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, Struct):
        return _struct_unstorable_at(value, value.__struct_fields__, where)
    return None


def _struct_unstorable_at(obj: Struct, fields: Iterable[str], where: str) -> str | None:
    for name in fields:
        found = unstorable_at(getattr(obj, name), f"{where}.{name}")
        if found:
            return found
    return None


def refuse_unstorable(obj: Struct, skip: frozenset[str] = frozenset()) -> None:
    """Raise ValueError when `obj` holds a NUL or lone surrogate anywhere (nested too).

    Called from `__post_init__` of every command body: msgspec runs it on decode and convert
    and turns the ValueError into a ValidationError, so fields a future change forgets to
    constrain are still checked. `skip` names fields of evidence (raw scanner reports).
    """
    fields = (f for f in obj.__struct_fields__ if f not in skip)
    found = _struct_unstorable_at(obj, fields, "$")
    if found:
        msg = f"text at `{found}` contains NUL or a lone surrogate, which cannot be stored"
        raise ValueError(msg)


_EXPLAINED = {
    f"matching regex {LINE.pattern!r}": "of one line without control characters",
    f"matching regex {PROSE.pattern!r}": "without control characters (tab and newline allowed)",
}


def explain(message: str) -> str:
    """A validation message with the text patterns above said in words."""
    for pattern, words in _EXPLAINED.items():
        message = message.replace(pattern, words)
    return message


def visible(match: re.Match[str]) -> str:
    """One matched character spelled as the six characters `\\uXXXX` (lower-case hex, as JSON
    spells it): the one convention PeaRL uses for characters it cannot or will not store."""
    return f"\\u{ord(match.group()):04x}"


def escape_controls(text: str) -> str:
    """`text` with every control character and lone surrogate written as a visible escape.

    For what PeaRL records from a request on its own account (a refused path, a header):
    always storable, on one line, and still showing what was sent.
    """
    return CONTROL.sub(visible, text)


def escape_unstorable(text: str) -> str:
    """`text` with NUL and lone surrogates (only those) written as visible escapes.

    For text stored before these rules (`domain/storable.py` `storable_state`): every other
    character stays as it was stored, so a clean text is returned unchanged.
    """
    return UNSTORABLE.sub(visible, text) if UNSTORABLE.search(text) else text


def escape_unstorable_in(value: Any) -> Any:
    """`value` with `escape_unstorable` applied to every string and key in it (dicts, lists,
    tuples, nested); anything else is returned as it is."""
    if isinstance(value, str):
        return escape_unstorable(value)
    if isinstance(value, dict):
        return {
            (escape_unstorable(k) if isinstance(k, str) else k): escape_unstorable_in(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [escape_unstorable_in(v) for v in value]
    if isinstance(value, tuple):
        return tuple(escape_unstorable_in(v) for v in value)
    return value
