"""Which text commands may hold, and the store's own refusal of what no projection can apply."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from contracts.commands import CreateOrg, RecordFinding, SubmitScan
from contracts.envelope import CommandEnvelope
from contracts.governance import SetPolicy, SetProfile
from contracts.text import escape_controls, explain, unstorable_at
from domain.access import AccessDenial
from domain.errors import UnstorableText
from domain.kernel import Idempotency
from domain.pearl_app import PearlApp

FINDING = {"tool": "semgrep", "rule_id": "r", "title": "t", "severity": "high"}


def refused(cls: type[Any], body: dict[str, Any]) -> str:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(body, cls, strict=True)
    return explain(str(info.value))


@pytest.mark.parametrize(
    "char", ["\x00", "\x01", "\t", "\n", "\r", "\x7f", "\x85", "\x9f", "\ud800"]
)
def test_one_line_fields_refuse_every_control_character(char: str):
    assert "one line" in refused(CreateOrg, {"slug": "a", "name": f"x{char}y"})
    refused(RecordFinding, {**FINDING, "title": f"x{char}"})
    refused(CommandEnvelope, {"id": f"c{char}", "data": {}})
    refused(SetProfile, {"owner_team": f"t{char}"})


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x85", "\ud800"])
def test_free_text_refuses_controls_but_tab_newline_cr(char: str):
    refused(RecordFinding, {**FINDING, "message": f"x{char}"})


def test_free_text_keeps_tab_newline_cr_and_all_printable_unicode():
    message = "a\tb\nc\r\nd \u202e\u200f\uffff\U0010ffff\U0001f600"
    assert msgspec.convert({**FINDING, "message": message}, RecordFinding).message == message


def test_nul_and_lone_surrogates_are_refused_anywhere_in_a_body_keys_included():
    policy = {"rules": [{"kind": "expression", "when": {"x": ["ok", "a\x00"]}}]}
    assert "$.policy.rules[0].when.x[1]" in refused(SetPolicy, {"policy": policy, "reason": "r"})
    assert "a key" in refused(SetPolicy, {"policy": {"\ud800": 1}, "reason": "r"})


def test_a_raw_report_is_evidence_and_not_refused_by_the_contract():
    scan = msgspec.convert({"project_id": "p", "report": {"m": "a\x00\ud800"}}, SubmitScan)
    assert scan.report == {"m": "a\x00\ud800"}


def test_regex_patterns_are_said_in_words():
    message = refused(RecordFinding, {**FINDING, "title": "a\nb"})
    assert "regex" not in message
    assert "one line without control characters" in message


def test_escape_controls_is_visible_and_leaves_other_text_alone():
    assert escape_controls("GET /x\x00\ud800\x85\n") == "GET /x\\u0000\\ud800\\u0085\\u000a"
    assert escape_controls("caf\u00e9 \u202e \\u0000") == "caf\u00e9 \u202e \\u0000"
    assert unstorable_at(escape_controls("\x00\ud800")) is None


def test_unstorable_at_names_the_location():
    assert unstorable_at({"a": [1, {"b": "x\x00"}]}) == "$.a[1].b"
    assert unstorable_at(("ok", "\x85", "\t")) is None


@pytest.fixture
def app() -> PearlApp:
    return PearlApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def denial(action: str, app: PearlApp) -> AccessDenial:
    return AccessDenial(
        org="system", action=action, resource="r", reason="x", code="c", channel="http",
        at=app.now(), actor="tests",
    )  # fmt: skip


@pytest.mark.parametrize("action", ["a\x00b", "\ud800", "\\\x00", "x" * 10_000 + "\x00"])
def test_the_store_refuses_events_holding_nul_or_lone_surrogates(app: PearlApp, action: str):
    with pytest.raises(UnstorableText):
        app.save(denial(action, app))
    assert app.recorder.max_notification_id() in (None, 0)


@pytest.mark.parametrize("action", ["\\u0000", "\\\\u0000", "\\\\\\\\u0000x", "\x01\x85\x9f"])
def test_the_store_keeps_text_that_only_looks_like_nul(app: PearlApp, action: str):
    app.save(denial(action, app))
    assert app.recorder.max_notification_id() == 1


def test_denials_are_recorded_with_request_text_escaped(app: PearlApp):
    app.record_denial("system", "anon\x00", "GET /x\x00", "/x\ud800", "why\x00", "c", "http")
    [event] = list(app.events.get(next(iter(_ids(app)))))
    assert event.action == "GET /x\\u0000"  # type: ignore[attr-defined]
    assert event.resource == "/x\\ud800"  # type: ignore[attr-defined]


def _ids(app: PearlApp) -> list[Any]:
    return [n.originator_id for n in app.recorder.select_notifications(1, 10)]


def test_an_idempotency_key_must_be_storable():
    with pytest.raises(UnstorableText):
        Idempotency("key\x00", "h")
    assert Idempotency("key\x85", "h").key == "key\x85"
