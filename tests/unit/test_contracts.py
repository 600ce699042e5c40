"""Wire contracts: subjects, command bodies and envelopes."""

from __future__ import annotations

import json
from typing import Any, get_args

import msgspec
import pytest

from contracts.commands import (
    CreateOrg,
    CreateProject,
    IssueApiKey,
    RecordFinding,
    Role,
    Severity,
)
from contracts.envelope import CommandEnvelope, EventEnvelope, event_type
from contracts.subjects import Subjects, check_token
from domain import authz
from domain.finding import SEVERITIES

FINDING: dict[str, Any] = {
    "tool": "semgrep",
    "rule_id": "python.sqli",
    "title": "SQL injection",
    "severity": "high",
}


def decode(body: dict[str, Any], type_: type[Any]) -> Any:
    return msgspec.json.decode(json.dumps(body).encode(), type=type_)


# --- subjects ---------------------------------------------------------------------------------


def test_command_and_event_subjects_follow_the_documented_shape_when_root_is_default() -> None:
    subjects = Subjects()

    assert subjects.command("acme", "finding", "record") == "pearl.cmd.acme.finding.record"
    assert subjects.event("acme", "finding", "seen_again") == "pearl.evt.acme.finding.seen_again"


def test_subjects_and_streams_use_the_root_when_a_test_root_is_given() -> None:
    subjects = Subjects(root="t1")

    assert subjects.command("acme", "project", "create") == "t1.cmd.acme.project.create"
    assert (subjects.all_commands, subjects.all_events, subjects.all_dlq) == (
        "t1.cmd.>",
        "t1.evt.>",
        "t1.dlq.>",
    )
    assert (subjects.commands_stream, subjects.events_stream, subjects.dlq_stream) == (
        "T1_COMMANDS",
        "T1_EVENTS",
        "T1_DLQ",
    )


def test_dlq_subject_replaces_root_with_dlq_prefix_when_given_a_command_subject() -> None:
    subjects = Subjects(root="t1")

    assert subjects.dlq("t1.cmd.acme.finding.record") == "t1.dlq.cmd.acme.finding.record"


def test_parse_command_returns_org_aggregate_command_when_subject_is_valid() -> None:
    assert Subjects().parse_command("pearl.cmd.acme.finding.record") == (
        "acme",
        "finding",
        "record",
    )


def test_parse_command_round_trips_when_subject_was_built_by_command() -> None:
    subjects = Subjects(root="t9")

    parsed = subjects.parse_command(subjects.command("org-1", "project", "create"))

    assert parsed == ("org-1", "project", "create")


@pytest.mark.parametrize(
    "subject",
    [
        "other.cmd.acme.finding.record",  # wrong root
        "pearl.evt.acme.finding.record",  # an event, not a command
        "pearl.cmd.acme.finding",  # too short
        "pearl.cmd.acme.finding.record.extra",  # too long
        "pearl",
        "",
    ],
)
def test_parse_command_raises_value_error_when_subject_is_not_a_command(subject: str) -> None:
    with pytest.raises(ValueError, match="not a command subject"):
        Subjects().parse_command(subject)


@pytest.mark.parametrize("token", ["acme", "ACME_1", "a-b", "x"])
def test_check_token_returns_value_when_token_is_plain(token: str) -> None:
    assert check_token(token) == token


@pytest.mark.parametrize("token", ["a.b", "*", ">", "ac me", "acme ", "", "a\tb", "ac*"])
def test_check_token_raises_when_token_would_break_subject(token: str) -> None:
    with pytest.raises(ValueError, match="not a valid subject token"):
        check_token(token)


def test_check_token_raises_when_token_ends_with_newline() -> None:
    with pytest.raises(ValueError):
        check_token("acme\n")


def test_command_subject_raises_when_org_contains_a_dot() -> None:
    with pytest.raises(ValueError):
        Subjects().command("acme.evil", "finding", "record")


def test_event_subject_raises_when_org_is_a_wildcard() -> None:
    with pytest.raises(ValueError):
        Subjects().event(">", "finding", "recorded")


# --- command bodies ---------------------------------------------------------------------------


def test_record_finding_decodes_with_defaults_when_only_required_fields_given() -> None:
    cmd = decode(FINDING, RecordFinding)

    assert cmd == RecordFinding(**FINDING)
    assert (cmd.project_id, cmd.path, cmd.line, cmd.fingerprint) == (None, None, None, None)
    assert (cmd.message, cmd.cwe, cmd.cve) == ("", [], [])


@pytest.mark.parametrize(
    ("type_", "body"),
    [
        (CreateOrg, {"slug": "acme", "name": "Acme", "owner": "bob"}),
        (CreateProject, {"slug": "web", "name": "Web", "envs": ["dev"]}),
        (RecordFinding, {**FINDING, "status": "open"}),
        (IssueApiKey, {"name": "k", "roles": ["admin"], "scopes": []}),
    ],
)
def test_command_decode_raises_when_body_has_an_unknown_field(
    type_: type[Any], body: dict[str, Any]
) -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        decode(body, type_)


@pytest.mark.parametrize(
    ("type_", "body", "where"),
    [
        (CreateOrg, {"slug": 1, "name": "Acme"}, "$.slug"),
        (RecordFinding, {**FINDING, "line": "42"}, "$.line"),
        (RecordFinding, {**FINDING, "cwe": "CWE-89"}, "$.cwe"),
        (IssueApiKey, {"name": "k", "roles": "admin"}, "$.roles"),
        (
            IssueApiKey,
            {"name": "k", "roles": ["admin"], "expires_in_days": "7"},
            "$.expires_in_days",
        ),
    ],
)
def test_command_decode_raises_naming_the_field_when_a_value_has_the_wrong_type(
    type_: type[Any], body: dict[str, Any], where: str
) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        decode(body, type_)

    assert where in str(info.value)


@pytest.mark.parametrize("body", [{"slug": "acme"}, {"name": "Acme"}])
def test_create_org_decode_raises_when_a_required_field_is_missing(body: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError, match="missing required field"):
        decode(body, CreateOrg)


@pytest.mark.parametrize("severity", ["critical", "high", "medium", "low", "info"])
def test_record_finding_accepts_severity_when_it_is_a_known_level(severity: str) -> None:
    assert decode({**FINDING, "severity": severity}, RecordFinding).severity == severity


@pytest.mark.parametrize("severity", ["urgent", "HIGH", "", "none"])
def test_record_finding_raises_when_severity_is_unknown(severity: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="severity"):
        decode({**FINDING, "severity": severity}, RecordFinding)


def test_severity_literal_matches_domain_severities_when_compared() -> None:
    assert tuple(get_args(Severity)) == SEVERITIES


def test_role_literal_matches_domain_roles_when_compared() -> None:
    assert set(get_args(Role)) == {r.value for r in authz.Role}


@pytest.mark.parametrize("slug", ["acme", "a", "0day", "acme-corp-2", "a" * 63])
def test_slug_is_accepted_when_it_matches_the_pattern(slug: str) -> None:
    assert decode({"slug": slug, "name": "N"}, CreateOrg).slug == slug


@pytest.mark.parametrize(
    "slug", ["", "Acme", "-acme", "ac_me", "ac.me", "ac me", "a" * 64, "acmé", "acme/x"]
)
def test_slug_is_rejected_when_it_breaks_the_pattern(slug: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.slug"):
        decode({"slug": slug, "name": "N"}, CreateOrg)


def test_slug_is_rejected_when_it_ends_with_newline() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode({"slug": "acme\n", "name": "N"}, CreateOrg)


def test_environment_is_rejected_when_it_ends_with_newline() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode({"slug": "web", "name": "Web", "environments": ["prod\n"]}, CreateProject)


def test_create_project_defaults_environments_when_none_given() -> None:
    cmd = decode({"slug": "web", "name": "Web"}, CreateProject)

    assert cmd.environments == ["dev", "staging", "prod"]


def test_create_project_default_environments_are_not_shared_when_two_are_decoded() -> None:
    first = decode({"slug": "web", "name": "Web"}, CreateProject)
    second = decode({"slug": "api", "name": "Api"}, CreateProject)

    first.environments.append("qa")

    assert second.environments == ["dev", "staging", "prod"]


@pytest.mark.parametrize(
    "environments", [[], ["Prod"], ["-dev"], ["dev.eu"], [f"e{i}" for i in range(11)]]
)
def test_create_project_raises_when_environments_are_invalid(environments: list[str]) -> None:
    with pytest.raises(msgspec.ValidationError, match="environments"):
        decode({"slug": "web", "name": "Web", "environments": environments}, CreateProject)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", ""),
        ("tool", ""),
        ("fingerprint", "short"),
        ("line", -1),
        ("line", 10_000_001),
        ("message", "x" * 20_001),
    ],
)
def test_record_finding_raises_when_a_value_is_out_of_bounds(field: str, value: Any) -> None:
    with pytest.raises(msgspec.ValidationError, match=field):
        decode({**FINDING, field: value}, RecordFinding)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "k", "roles": []},
        {"name": "k", "roles": ["root"]},
        {"name": "k", "roles": ["admin"], "expires_in_days": 0},
        {"name": "k", "roles": ["admin"], "expires_in_days": 3651},
        {"name": "", "roles": ["admin"]},
    ],
)
def test_issue_api_key_raises_when_roles_name_or_expiry_are_invalid(body: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(body, IssueApiKey)


def test_convert_strict_rejects_stringly_typed_numbers_when_decoding_from_a_dict() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.line"):
        msgspec.convert({**FINDING, "line": "42"}, type=RecordFinding, strict=True)


def test_command_structs_are_frozen_when_constructed() -> None:
    cmd = CreateOrg(slug="acme", name="Acme")

    with pytest.raises(AttributeError):
        cmd.slug = "other"  # type: ignore[misc]


# --- envelopes --------------------------------------------------------------------------------


def _event_envelope(**overrides: Any) -> EventEnvelope:
    fields: dict[str, Any] = {
        "id": "e-1",
        "source": "/pearl/acme/finding",
        "type": "pearl.finding.recorded.v1",
        "subject": "f-1",
        "time": "2024-01-01T00:00:00+00:00",
        "org": "acme",
        "data": {"severity": "high", "details": {"line": 3}},
        "position": 7,
        "aggregate": "finding",
        "aggregateid": "f-1",
        "aggregateversion": 1,
        "actor": "service:k1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    fields.update(overrides)
    return EventEnvelope(**fields)


def test_event_envelope_round_trips_when_encoded_and_decoded() -> None:
    envelope = _event_envelope()

    decoded = msgspec.json.decode(msgspec.json.encode(envelope), type=EventEnvelope)

    assert decoded == envelope


def test_event_envelope_encodes_cloudevents_defaults_when_not_given() -> None:
    raw = json.loads(msgspec.json.encode(_event_envelope(traceparent=None)))

    assert raw["specversion"] == "1.0"
    assert raw["datacontenttype"] == "application/json"
    assert raw["traceparent"] is None


def test_command_envelope_round_trips_when_encoded_and_decoded() -> None:
    envelope = CommandEnvelope(id="c-1", source="tests", traceparent="00-a-b-01", data=FINDING)

    decoded = msgspec.json.decode(msgspec.json.encode(envelope), type=CommandEnvelope)

    assert decoded == envelope


def test_command_envelope_defaults_optional_fields_when_only_id_and_data_given() -> None:
    envelope = decode({"id": "c-1", "data": {}}, CommandEnvelope)

    assert (envelope.specversion, envelope.source, envelope.type) == ("1.0", "unknown", None)


def test_command_envelope_raises_when_it_has_an_unknown_field() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `token`"):
        decode({"id": "c-1", "data": {}, "token": "pk_x"}, CommandEnvelope)


@pytest.mark.parametrize("body", [{"data": {}}, {"id": "c-1"}, {"id": "c-1", "data": []}])
def test_command_envelope_raises_when_id_or_data_is_missing_or_wrong(body: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(body, CommandEnvelope)


def test_event_type_is_pearl_aggregate_event_version_when_built() -> None:
    assert event_type("finding", "seen_again") == "pearl.finding.seen_again.v1"
    assert event_type("api_key", "revoked", version=2) == "pearl.api_key.revoked.v2"
