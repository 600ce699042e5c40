"""Generated documents do not depend on how the running Python keeps docstrings."""

from __future__ import annotations

import inspect
import json
from typing import Any

import msgspec

from contracts.docs_text import clean, render
from contracts.schemas import asyncapi, event_schemas, policy_schema
from services.api.openapi import openapi_document

INDENTED = """First line.

    Second paragraph, indented as Python 3.11 keeps it.
      A deeper line.
    """
DEDENTED = """First line.

Second paragraph, indented as Python 3.11 keeps it.
  A deeper line.
"""


class KeptIndent(msgspec.Struct):
    x: int


class Stripped(msgspec.Struct):
    x: int


KeptIndent.__doc__ = INDENTED  # what python3.11 stores
Stripped.__doc__ = DEDENTED  # what python3.13 stores for the same source


def _descriptions(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [v for k, v in value.items() if k == "description" and isinstance(v, str)]
        return found + [d for v in value.values() for d in _descriptions(v)]
    if isinstance(value, list):
        return [d for v in value for d in _descriptions(v)]
    return []


def test_a_docstring_renders_the_same_whether_python_kept_its_indentation_or_not():
    kept = _descriptions(json.loads(render(msgspec.json.schema(KeptIndent))))
    stripped = _descriptions(json.loads(render(msgspec.json.schema(Stripped))))
    assert kept == stripped == [inspect.cleandoc(DEDENTED)]


def test_clean_reaches_nested_descriptions_and_leaves_other_strings_alone():
    doc = {"a": [{"description": INDENTED, "example": INDENTED}], "summary": "  x\n    y"}
    out = clean(doc)
    assert out["a"][0]["description"] == inspect.cleandoc(INDENTED)
    assert out["a"][0]["example"] == INDENTED
    assert out["summary"] == "x\ny"


def test_every_generated_description_is_already_clean():
    for doc in (event_schemas(), policy_schema(), asyncapi(), openapi_document()):
        descriptions = _descriptions(doc)
        assert descriptions
        for text in descriptions:
            assert inspect.cleandoc(text) == text, text
