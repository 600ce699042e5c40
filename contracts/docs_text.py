"""Generated documents (OpenAPI, JSON Schemas, AsyncAPI) rendered to the same bytes everywhere.

Descriptions come from docstrings, and what a docstring holds depends on the Python version
(3.13 strips their indentation at compile time) and on the generator's version (how msgspec or
Litestar clean them). Every description is passed through `inspect.cleandoc` here, and the
document is serialized one way, so the committed files are byte-identical on every supported
Python.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

#: Keys whose string values are prose taken from docstrings.
PROSE_KEYS = frozenset({"description", "summary"})


def clean(value: Any) -> Any:
    """A copy of a JSON-like document with every description `inspect.cleandoc`-ed."""
    if isinstance(value, dict):
        return {
            key: inspect.cleandoc(item)
            if key in PROSE_KEYS and isinstance(item, str)
            else clean(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [clean(item) for item in value]
    return value


def cleaned(document: dict[str, Any]) -> dict[str, Any]:
    """`clean` for a whole document (an object)."""
    result: dict[str, Any] = clean(document)
    return result


def render(document: Any) -> str:
    """The committed text of a generated document."""
    return json.dumps(clean(document), indent=2, sort_keys=True, ensure_ascii=True) + "\n"
