"""Hypothesis strategies for hostile input: all of Unicode, deep and wide nesting, wrong types."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

#: Characters that broke or could break a store, a projection, a log or a terminal.
SPECIAL = [
    "\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\x9b", "\x9f",
    "\ud800", "\udbff", "\udc00", "\udfff",
    "\ufffe", "\uffff", "\ufeff", "\u202e", "\u200f", "\u2028", "\U0010ffff", "\U0001f600",
    "\t", "\n", "\r", "\\", '"', "'", "%", "/", "..", "{", "[", "\\u0000",
]  # fmt: skip
#: Large strings are drawn from a few fixed ones: generating a megabyte per example is slow.
LARGE = [
    "x" * 1_000_000,
    "\x00" * 1_000,
    "a" * 20_001 + "\x00",
    "\ud800" * 10_000,
]

hostile_char = st.one_of(
    st.sampled_from([c for c in SPECIAL if len(c) == 1]), st.characters(exclude_categories=())
)


def texts(large: list[str]) -> st.SearchStrategy[str]:
    """Hostile strings: random Unicode, runs of special characters, and a few large ones."""
    return st.one_of(
        st.text(hostile_char, max_size=40),
        st.lists(st.sampled_from(SPECIAL), min_size=1, max_size=6).map("".join),
        st.builds(lambda a, s, b: a + s + b, st.text(max_size=8), st.sampled_from(SPECIAL),
                  st.text(max_size=8)),
        st.sampled_from(large),
    )  # fmt: skip


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Any JSON value, nested a little, with hostile strings as keys and values."""
    scalar = st.one_of(
        text,
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
    )
    return st.recursive(
        scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)
        ),
        max_leaves=12,
    )


hostile_text = texts(LARGE)
json_value = json_values(hostile_text)
#: For the bus: a message is at most NATS's max payload (1 MB), so strings stay smaller.
bus_text = texts(["x" * 200_000, "\x00" * 1_000, "\ud800" * 1_000])
bus_json_value = json_values(bus_text)


def nested(depth: int, opener: str) -> str:
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


deep_json = st.builds(nested, st.sampled_from([65, 1_100, 20_000, 100_000]), st.sampled_from("[{"))
wide_json = st.sampled_from(
    [json.dumps(list(range(150_000))), json.dumps({str(i): i for i in range(50_000)})]
)


def encode_json(value: Any) -> bytes:
    """JSON text as a client could send it: lone surrogates as `\\udXXX` escapes."""
    return json.dumps(value).encode()


def fields_of(schema: dict[str, Any], components: dict[str, Any]) -> list[str]:
    """The property names of a request body schema (following `$ref`)."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        schema = components.get(ref.rsplit("/", 1)[-1], {})
    return sorted(schema.get("properties", {}))


def body_for(field_names: list[str], *, deep: bool = True) -> st.SearchStrategy[bytes]:
    """A body: the command's own fields with hostile values, or anything else JSON or not."""
    shaped = st.fixed_dictionaries({}, optional={name: json_value for name in field_names}).map(
        encode_json
    )
    kinds = [
        shaped,
        shaped,
        json_value.map(encode_json),
        st.binary(max_size=64),
        st.text(hostile_char, max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),
    ]
    if deep:
        kinds += [
            deep_json.map(str.encode),
            wide_json.map(str.encode),
            st.sampled_from(field_names or ["x"]).map(
                lambda f: json.dumps({f: "x" * 2_000_000}).encode()
            ),
        ]
    return st.one_of(*kinds)


content_type = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ]
)


def url_text(value: Any) -> str:
    """A value percent-encoded for a URL (lone surrogates as their UTF-8-ish bytes)."""
    return quote(str(value).encode("utf-8", "surrogatepass"), safe="")


query_value = st.one_of(
    hostile_text.filter(lambda t: len(t) < 10_000),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from(["true", "false", "", "2026-13-45T99:00:00", "1e999", "NaN"]),
)
