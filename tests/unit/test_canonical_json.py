"""The audit chain's canonical JSON is byte for byte what `json.dumps` wrote before msgspec."""

from __future__ import annotations

import json
import random
import struct
from typing import Any

import pytest

from projections.audit import canonical_json


def _reference(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": {"z": [1, {"y": None, "x": True}], "é": "ü"}, "": False, "aa": -3},
        {"text": "".join(chr(c) for c in range(0, 0x800)) + "\u2028\u2029\U0001f600\ufeff"},
        {"\U0001f600": 1, "\uffff": 2, "E": 3, "e": 4, "a\x00": 5},
        {"big": 2**70, "neg": -(2**64), "zero": 0},
        {"floats": [1e16, 1e-5, 0.1, 100.0, 2.5e-7, -0.0, 1.5e300]},
        {"nested": {"deep": [[{"f": 1.0}]]}},
        {"nan": float("nan"), "inf": float("inf")},
        {"tuple": (1, "a")},
        {1: "int key"},
        [],
        {},
        "plain",
    ],
)
def test_canonical_json_is_the_json_modules_when_values_vary(value: Any) -> None:
    assert canonical_json(value) == _reference(value)


def test_canonical_json_is_the_json_modules_when_floats_are_random() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        number = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        value = {"n": number, "s": rng.random() * 10 ** rng.randint(-30, 30)}

        assert canonical_json(value) == _reference(value)


def test_canonical_json_skips_the_check_when_the_caller_vouches_for_native_json() -> None:
    value = {"a": [1, "x", None, {"b": True}]}

    assert canonical_json(value, json_native=True) == _reference(value)
