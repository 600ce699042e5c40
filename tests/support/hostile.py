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


def pick(values: list[Any]) -> st.SearchStrategy[Any]:
    """`sampled_from` for large values: its repr (which hypothesis builds) names no value."""
    return st.integers(min_value=0, max_value=len(values) - 1).map(lambda i: values[i])


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
        pick(large),
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
wide_json = pick([json.dumps(list(range(150_000))), json.dumps({str(i): i for i in range(50_000)})])


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


#: `min_position`: real positions (at or below the store head), positions beyond it (422
#: `position-beyond-head` at once), beyond any 64-bit integer, negative, and not a number.
position_value = st.one_of(
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=10**6, max_value=2**63 - 1),
    st.integers(min_value=2**63, max_value=2**200),
    st.integers(max_value=-1),
    pick(["1.5", "0x10", "1e3", "+1", " 1", "00", "\u0661\u0662", "", "9" * 5_000]),
    query_value,
)

DEEP = 100_000
#: JSON value fragments that are hostile to a decoder rather than to a validator: nesting far
#: past any recursion limit, numbers beyond any float or 64-bit integer, invalid UTF-8 (in
#: and out of strings), escaped lone surrogates and NUL, a raw control character in a string.
HOSTILE_FRAGMENTS = [
    b"[" * DEEP + b"]" * DEEP,
    b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    b"[" * 1_100 + b"]" * 1_100,
    b"[" * 20_000 + b"]" * 20_000,
    b"9" * 100_000,
    b"-" + b"9" * 5_000,
    b"1e999999",
    b"-1e-999999",
    b"0." + b"1" * 10_000,
    b'"\xff\xfe\xc3\x28"',
    b'"\xed\xa0\x80"',  # a lone surrogate, encoded
    b"\xc3\x28",
    b'"\\ud800"',
    b'"\\u0000"',
    b'"a\x00b\x1b[31m\x85"',
    b'"' + b"\\" * 10_001 + b'"',
    b"[" * 500,  # never closed
]


def envelope_bytes(ident: str, name: str, fragment: bytes) -> bytes:
    """A command envelope whose `data.<name>` is `fragment`, spliced in as raw bytes."""
    return b'{"id": "%s", "data": {"%s": %s}}' % (ident.encode(), name.encode(), fragment)


#: Whole bus bodies that no JSON decoder should be trusted with (each under 1 MB).
HOSTILE_BODIES = [
    b"[" * DEEP + b"]" * DEEP,
    b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    b'{"id": "x", "data": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    b'{"id": ' + b"[" * DEEP + b"]" * DEEP + b', "data": {}}',
    b'{"id": "\xff\xfe", "data": {}}',
    b'\xef\xbb\xbf{"id": "x", "data": {}}',
    b'{"id": "x", "id": "y", "data": {}, "data": []}',
    b'{"id": "x", "data": {}} trailing',
    b'{"id": "x", "data": {',
    b"\x00" * 1_000,
    b"",
]


def bus_body(field_names: list[str]) -> st.SearchStrategy[bytes]:
    """Decode-hostile bytes: a whole hostile body, or a hostile fragment in one data field."""
    ident = st.one_of(st.uuids().map(str), st.just("x"))
    spliced = st.builds(
        envelope_bytes,
        ident,
        st.sampled_from(field_names or ["x"]),
        pick(HOSTILE_FRAGMENTS),
    )
    return st.one_of(spliced, spliced, pick(HOSTILE_BODIES))


# --- scanner reports ----------------------------------------------------------------------


def taint(value: Any, text: str, every: bool) -> Any:
    """A report with `text` appended to its messages and snippets (`every`: to each string)."""
    if isinstance(value, dict):
        return {
            k: (
                v + text
                if isinstance(v, str) and (every or k.lower() in PROSE_KEYS)
                else taint(v, text, every)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [taint(v, text, every) for v in value]
    return value


#: Where scanners put free text: messages, descriptions, code snippets.
PROSE_KEYS = {
    "text",
    "message",
    "issue_text",
    "code",
    "lines",
    "snippet",
    "description",
    "markdown",
}


SARIF_HEAD = b'{"version":"2.1.0","runs":[{"results":['


def report_body(samples: list[bytes]) -> st.SearchStrategy[bytes]:
    """Scanner reports hostile in shape or content: deep, wide, control characters, not JSON."""
    reports = [json.loads(s) for s in samples]
    depth = st.sampled_from([65, 1_100, 20_000, DEEP])
    deep = st.one_of(
        depth.map(lambda n: b'{"runs":' + b"[" * n + b"]" * n + b"}"),
        depth.map(lambda n: b'{"results":[' + b'{"a":' * n + b"1" + b"}" * n + b"]}"),
        depth.map(lambda n: SARIF_HEAD + b"[" * n + b"]" * n + b"]}]}"),
    )
    wide = pick(
        [
            b'{"results":[' + b",".join([b"{}"] * 150_000) + b"]}",
            b'{"runs":[{"tool":{"driver":{"name":"x"}},"results":['
            + b",".join([b'{"ruleId":"r","message":{"text":"m"}}'] * 50_000)
            + b"]}]}",
            json.dumps({str(i): i for i in range(50_000)}).encode(),
            b'{"results":[{"check_id":"' + b"x" * 2_000_000 + b'"}]}',
        ]
    )
    kinds: list[st.SearchStrategy[bytes]] = [
        deep,
        wide,
        pick(HOSTILE_FRAGMENTS),
        st.binary(max_size=64),
    ]
    if reports:
        tainted = st.builds(taint, pick(reports), hostile_text, st.booleans())
        kinds += [
            tainted.map(encode_json),
            tainted.map(
                lambda r: json.dumps(r, ensure_ascii=False).encode("utf-8", "surrogatepass")
            ),
            # raw (unescaped) control characters inside the report's strings: not JSON
            st.builds(
                lambda s, c: s.replace(b'": "', b'": "' + c, 50),
                pick(samples),
                st.sampled_from([b"\x00", b"\x1b", b"\x7f", b"\xc2\x85", b"\xff"]),
            ),
        ]
    return st.one_of(*kinds)
