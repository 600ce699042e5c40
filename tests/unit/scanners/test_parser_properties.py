"""Property: any mutation of a real report is parsed to safe findings or refused as invalid.

Mutations of the seeds (real samples, shrunk, and one report per format): unsafe and unusual
characters injected into every string and key, values wrapped in deep nesting, the bytes
truncated or flipped. The oracle (tests/fuzz/oracle.py) parses each both ways and allows only
ReportError; findings must carry only text PostgreSQL and JSON can hold.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.oracle import CHOICES, run_one, seed_documents

SEEDS = [json.loads(data) for _, data in seed_documents()]
HOSTILE = st.sampled_from(["\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9f", "\ud800", "\udfff"])
HOSTILE |= st.sampled_from(["\ufeff", "\u200f", "\u202e", "\uffff", "\U0010ffff", "\t", "\\"])
CHARS = st.text(HOSTILE | st.characters(), min_size=1, max_size=4)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def inject(value: Any, draw: Any, keys: bool) -> Any:
    """Put drawn characters into every string (and, when keys is set, every key)."""
    if isinstance(value, dict):
        return {
            (_mix(key, draw(CHARS)) if keys else key): inject(item, draw, keys)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [inject(item, draw, keys) for item in value]
    if isinstance(value, str):
        return _mix(value, draw(CHARS))
    return value


def _mix(value: str, extra: str) -> str:
    middle = len(value) // 2
    return value[:middle] + extra + value[middle:]


def nest(value: Any, depth: int, target: int, counter: list[int]) -> Any:
    """Wrap the target-th value met (depth-first) in `depth` arrays."""
    counter[0] += 1
    if counter[0] == target:
        for _ in range(depth):
            value = [value]
        return value
    if isinstance(value, dict):
        return {key: nest(item, depth, target, counter) for key, item in value.items()}
    if isinstance(value, list):
        return [nest(item, depth, target, counter) for item in value]
    return value


def encode(document: Any, selector: int) -> bytes:
    return bytes([selector % len(CHOICES)]) + json.dumps(document).encode()


@SETTINGS
@given(st.sampled_from(SEEDS), st.data(), st.booleans(), st.integers(0, 255))
def test_findings_are_safe_or_report_refused_when_every_string_carries_unsafe_characters(
    seed: Any, data: st.DataObject, keys: bool, selector: int
) -> None:
    run_one(encode(inject(seed, data.draw, keys), selector))


@SETTINGS
@given(st.sampled_from(SEEDS), st.integers(1, 400), st.integers(1, 200), st.integers(0, 255))
def test_findings_are_safe_or_report_refused_when_a_value_is_nested_deep(
    seed: Any, depth: int, target: int, selector: int
) -> None:
    run_one(encode(nest(seed, depth, target, [0]), selector))


@SETTINGS
@given(st.sampled_from(SEEDS), st.floats(0, 1), st.integers(0, 255))
def test_findings_are_safe_or_report_refused_when_the_report_is_truncated(
    seed: Any, cut: float, selector: int
) -> None:
    data = encode(seed, selector)
    run_one(data[: max(1, int(len(data) * cut))])


@SETTINGS
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=3)), max_size=8),
)
def test_findings_are_safe_or_report_refused_when_bytes_are_overwritten(
    seed: Any, edits: list[tuple[float, bytes]]
) -> None:
    data = bytearray(encode(seed, 0))
    for where, replacement in edits:
        at = 1 + int((len(data) - 1) * where)
        data[at : at + len(replacement)] = replacement
    run_one(bytes(data))
