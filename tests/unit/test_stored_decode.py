"""The fast stored-event decoder gives exactly what the mapper and `to_envelope` give."""

from __future__ import annotations

import json
import uuid
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from contracts.commands import CreateOrg, CreateProject
from contracts.text import unstorable_at
from domain.base import stable_id
from domain.finding import finding_id
from domain.pearl_app import PearlApp
from domain.storable import StorableMapper, storable_state
from domain.stored_decoder import EnvelopeDecoder, event_id
from domain.wire import to_envelope
from tests.unit.test_event_contracts import _scenario, _store_v1_recorded

RECORDED = "domain.finding:Finding.Recorded"


def _both(app: PearlApp) -> list[tuple[Any, Any]]:
    """(mapper's envelope, decoder's envelope) for every stored event."""
    decoder = EnvelopeDecoder(app.mapper)
    pairs = []
    for n in app.recorder.select_notifications(1, 10_000):
        slow = to_envelope(app.mapper.to_domain_event(n), n.id)
        fast = decoder.envelope(n.id, n.originator_id, n.originator_version, n.topic, n.state)
        pairs.append((slow, fast))
    return pairs


def _app_with_project() -> tuple[PearlApp, UUID]:
    app = PearlApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    admin = app.authenticate(app.bootstrap_admin_key())
    app.create_org(admin, CreateOrg(slug="acme", name="Acme"))
    project = UUID(app.create_project(admin, "acme", CreateProject(slug="w", name="W")).ids["id"])
    return app, project


def _store_recorded(app: PearlApp, project: UUID, **changes: Any) -> None:
    """A v2 Finding.Recorded as stored, with some of its state replaced."""
    state: dict[str, Any] = {
        "timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00+00:00"},
        "originator_topic": "domain.finding:Finding",
        "org": "acme",
        "actor": "system:t",
        "traceparent": "",
        "project_id": str(project),
        "fingerprint": "fp",
        "tool": "bandit",
        "rule_id": "B101",
        "title": "assert used",
        "severity": "high",
        "details": {"path": "a.py", "line": 3},
        "scan_id": None,
        "seen_at": "2026-01-01T00:00:00+00:00",
        "sla_due": None,
        "sla_days": 30,
        "class_version": 2,
    }
    state.update(changes)
    fid = finding_id(project, str(uuid.uuid4()))
    app.recorder.insert_events([StoredEvent(fid, 1, RECORDED, json.dumps(state).encode())])


def test_envelopes_are_the_mappers_when_every_kind_of_event_is_decoded() -> None:
    pairs = _both(_scenario())

    assert len({fast.type for _, fast in pairs}) > 40
    for slow, fast in pairs:
        assert fast == slow
        assert list(fast.data) == list(slow.data)


def test_a_v1_event_is_upcast_by_the_mapper_when_its_class_is_at_v2() -> None:
    app, project = _app_with_project()
    _store_v1_recorded(app, project)
    decoder = EnvelopeDecoder(app.mapper)

    slow, fast = _both(app)[-1]

    assert fast == slow
    assert fast.data["sla_days"] == 30
    note = app.recorder.select_notifications(1, 100)[-1]
    decoder.envelope(note.id, note.originator_id, 1, note.topic, note.state)
    assert decoder.unsure == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"details": {"score": 1e16, "ratio": 0.1, "tiny": 1e-5}},
        {"details": {"ids": [{"_type_": "uuid_hex", "_data_": "a" * 32}]}},
        {"details": {"at": {"_type_": "datetime_iso", "_data_": "2026-01-01T10:00:00+02:00"}}},
        {"details": {"amount": {"_type_": "decimal_str", "_data_": "1.50"}}},
        {"timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-01T00:00:00.000000+00:00"}},
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        {"title": "Ünïcödé \u2028 \x1f"},
    ],
)
def test_envelope_is_the_mappers_when_the_state_holds_unusual_values(
    changes: dict[str, Any],
) -> None:
    app, project = _app_with_project()
    _store_recorded(app, project, **changes)

    slow, fast = _both(app)[-1]

    assert fast == slow
    assert list(fast.data) == list(slow.data)


def test_decoder_counts_an_event_unsure_when_its_data_holds_a_float() -> None:
    app, project = _app_with_project()
    _store_recorded(app, project)
    _store_recorded(app, project, details={"score": 7.5})
    decoder = EnvelopeDecoder(app.mapper)
    *_, plain, floating = app.recorder.select_notifications(1, 100)

    decoder.envelope(plain.id, plain.originator_id, 1, plain.topic, plain.state)
    assert decoder.unsure == 0
    decoder.envelope(floating.id, floating.originator_id, 1, floating.topic, floating.state)
    assert decoder.unsure == 1


def test_event_id_is_the_stable_id_when_computed_without_uuid_objects() -> None:
    for version in range(1, 500):
        aggregate = str(uuid.uuid4())

        assert event_id(aggregate, version) == str(stable_id("event", aggregate, str(version)))


# --- events stored before the text rules (ADR 0010) ----------------------------------------


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        ("a\x00b", "a\\u0000b"),
        ("c\ud800d", "c\\ud800d"),
        ("\udfff\x00", "\\udfff\\u0000"),
        ("pair \U0001f600 \ud83d\ude00", "pair \U0001f600 \U0001f600"),  # not lone: kept
        ("already \\u0000 escaped", "already \\u0000 escaped"),
    ],
)
def test_old_unstorable_text_is_read_escaped_by_the_decoder_and_the_mapper(
    stored: str, read: str
) -> None:
    app, project = _app_with_project()
    _store_recorded(app, project, title=stored, details={stored: [stored]})

    slow, fast = _both(app)[-1]

    assert fast == slow
    assert fast.data["title"] == read
    assert fast.data["details"] == {read: [read]}
    assert unstorable_at(fast.data) is None


def test_clean_state_is_returned_as_it_is_without_being_decoded() -> None:
    app = _scenario()
    for n in app.recorder.select_notifications(1, 10_000):
        assert storable_state(n.state) is n.state
    escaped = json.dumps({"title": "a\\u0000 \\ud800 \\\\u0000"}).encode()
    assert storable_state(escaped) is escaped


def test_a_repaired_state_changes_nothing_but_the_unstorable_characters() -> None:
    state = {"title": "a\x00b", "n": 1, "f": 0.1, "u": "Ünï \u2028", "z": None, "k": [True]}
    old = json.dumps(state).encode()

    repaired = storable_state(old)

    assert json.loads(repaired) == {**state, "title": "a\\u0000b"}
    assert list(json.loads(repaired)) == list(state)
    assert storable_state(repaired) is repaired  # once escaped, clean for good


def test_an_aggregate_from_an_old_event_takes_later_commands() -> None:
    app, project = _app_with_project()
    _store_recorded(app, project, title="a\x00b")
    fid = UUID(str(list(app.recorder.select_notifications(1, 100))[-1].originator_id))
    admin = app.authenticate(app.bootstrap_admin_key())

    assert app.get_finding(admin, fid).title == "a\\u0000b"
    app.triage_finding(admin, fid, "false_positive", "test code")

    finding = app.get_finding(admin, fid)
    assert finding.status == "false_positive" and finding.title == "a\\u0000b"
    # a later event copying the title would be storable: the aggregate holds no NUL
    assert unstorable_at(vars(finding)) is None


class _Reversing:
    """A stand-in cipher: the stored state is not plain JSON, so the decoded event is walked."""

    def encrypt(self, plaintext: bytes) -> bytes:
        return plaintext[::-1]

    def decrypt(self, ciphertext: bytes) -> bytes:
        return ciphertext[::-1]


def test_old_unstorable_text_is_escaped_when_the_state_is_enciphered() -> None:
    app, project = _app_with_project()
    _store_recorded(app, project, title="a\x00b")
    plain = list(app.recorder.select_notifications(1, 100))[-1]
    mapper = StorableMapper(app.mapper.transcoder, cipher=_Reversing())  # type: ignore[arg-type]
    stored = StoredEvent(plain.originator_id, 1, plain.topic, plain.state[::-1])

    assert mapper.to_domain_event(stored).title == "a\\u0000b"  # type: ignore[attr-defined]
    env = EnvelopeDecoder(mapper).envelope(9, stored.originator_id, 1, stored.topic, stored.state)
    assert env.data["title"] == "a\\u0000b"
