"""The audit log's per-org hash chain: deterministic, and tampering shows at the first bad entry."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from contracts.envelope import EventEnvelope
from projections.audit import GENESIS, canonical_entry, chain_hash, trace_id, verify_chain

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def envelope(position: int, **overrides: Any) -> EventEnvelope:
    fields: dict[str, Any] = {
        "id": f"e-{position}",
        "source": "/pearl/acme/finding",
        "type": "pearl.finding.recorded.v1",
        "subject": "f-1",
        "time": f"2024-01-01T00:00:{position:02d}+00:00",
        "org": "acme",
        "data": {"severity": "high", "n": position, "title": "Ünïcödé"},
        "position": position,
        "aggregate": "finding",
        "aggregateid": "f-1",
        "aggregateversion": position,
        "actor": "service:k1",
    }
    fields.update(overrides)
    return EventEnvelope(**fields)


def chain(envelopes: list[EventEnvelope]) -> list[tuple[EventEnvelope, int, str]]:
    """Entries as the projection stores them: (event, seq, hash)."""
    entries = []
    prev = GENESIS
    for seq, env in enumerate(envelopes, start=1):
        prev = chain_hash(prev, canonical_entry(env, seq))
        entries.append((env, seq, prev))
    return entries


def test_chain_hash_is_a_deterministic_sha256_hex_when_called_twice() -> None:
    entry = canonical_entry(envelope(1), 1)

    first, second = chain_hash(GENESIS, entry), chain_hash(GENESIS, dict(reversed(entry.items())))

    assert first == second
    assert len(first) == 64
    assert int(first, 16) >= 0


def test_chain_hash_changes_when_previous_hash_changes() -> None:
    entry = canonical_entry(envelope(1), 1)

    assert chain_hash(GENESIS, entry) != chain_hash("1" * 64, entry)


@pytest.mark.parametrize(
    "change",
    [
        {"data": {"severity": "low", "n": 1, "title": "Ünïcödé"}},
        {"actor": "human:mallory"},
        {"time": "2025-01-01T00:00:00+00:00"},
        {"type": "pearl.finding.fixed.v1"},
        {"org": "globex"},
        {"position": 99},
        {"aggregateversion": 7},
    ],
)
def test_chain_hash_changes_when_any_covered_field_changes(change: dict[str, Any]) -> None:
    original = chain_hash(GENESIS, canonical_entry(envelope(1), 1))
    altered_env = msgspec.structs.replace(envelope(1), **change)

    altered = chain_hash(GENESIS, canonical_entry(altered_env, 1))

    assert altered != original


def test_chain_hash_ignores_fields_outside_the_canonical_entry_when_they_change() -> None:
    original = chain_hash(GENESIS, canonical_entry(envelope(1), 1))

    same = chain_hash(GENESIS, canonical_entry(envelope(1, traceparent="00-a-b-01"), 1))

    assert same == original


def test_canonical_entry_covers_seq_and_event_fields_when_built() -> None:
    entry = canonical_entry(envelope(3), 5)

    assert entry == {
        "seq": 5,
        "org": "acme",
        "position": 3,
        "event_id": "e-3",
        "type": "pearl.finding.recorded.v1",
        "aggregate_id": "f-1",
        "aggregate_version": 3,
        "actor": "service:k1",
        "time": "2024-01-01T00:00:03+00:00",
        "data": {"severity": "high", "n": 3, "title": "Ünïcödé"},
    }


def test_verify_chain_returns_none_when_chain_is_intact() -> None:
    assert verify_chain(chain([envelope(p) for p in (1, 2, 5, 9)])) is None


def test_verify_chain_returns_none_when_chain_is_empty() -> None:
    assert verify_chain([]) is None


def test_verify_chain_returns_the_altered_position_when_a_data_field_is_edited() -> None:
    entries = chain([envelope(p) for p in (1, 2, 3, 4)])
    env, seq, stored = entries[2]
    tampered = msgspec.structs.replace(env, data={**env.data, "severity": "low"})
    entries[2] = (tampered, seq, stored)

    assert verify_chain(entries) == 3


def test_verify_chain_returns_the_entry_after_a_deleted_one_when_an_entry_is_removed() -> None:
    entries = chain([envelope(p) for p in (10, 20, 30, 40)])

    del entries[1]

    assert verify_chain(entries) == 30


def test_verify_chain_returns_the_first_of_a_swapped_pair_when_two_entries_trade_places() -> None:
    entries = chain([envelope(p) for p in (1, 2, 3, 4)])

    entries[1], entries[2] = entries[2], entries[1]

    assert verify_chain(entries) == 3


def test_verify_chain_returns_the_first_position_when_a_stored_hash_is_replaced() -> None:
    entries = chain([envelope(p) for p in (1, 2, 3)])
    env, seq, _ = entries[0]

    entries[0] = (env, seq, "f" * 64)

    assert verify_chain(entries) == 1


def test_verify_chain_detects_a_forged_rehash_when_later_entries_were_not_rehashed() -> None:
    entries = chain([envelope(p) for p in (1, 2, 3)])
    forged = msgspec.structs.replace(entries[1][0], actor="human:mallory")
    entries[1] = (forged, 2, chain_hash(entries[0][2], canonical_entry(forged, 2)))

    assert verify_chain(entries) == 3


@pytest.mark.parametrize(
    ("traceparent", "expected"),
    [
        (f"00-{TRACE}-00f067aa0ba902b7-01", TRACE),
        (None, None),
        ("", None),
        ("garbage", None),
        (f"00-{TRACE}-00f067aa0ba902b7", None),
    ],
)
def test_trace_id_extracts_the_trace_when_traceparent_is_well_formed(
    traceparent: str | None, expected: str | None
) -> None:
    assert trace_id(traceparent) == expected


def test_verify_chain_returns_the_position_when_a_stored_seq_is_out_of_order() -> None:
    entries = chain([envelope(p) for p in (1, 2, 3)])
    env, _, stored = entries[1]

    entries[1] = (env, 7, stored)

    assert verify_chain(entries) == 2
