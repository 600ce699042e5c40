"""Mapping stored domain events onto the published EventEnvelope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec
import pytest

from contracts.envelope import EventEnvelope
from domain.authz import Principal
from domain.base import current_traceparent, stable_id
from domain.pearl_app import PearlApp
from domain.wire import names_of, snake, to_envelope
from tests.unit.conftest import finding_cmd, stored_events

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
META = {"originator_id", "originator_version", "timestamp", "originator_topic", "org", "actor"}


def envelopes(app: PearlApp) -> list[EventEnvelope]:
    return [to_envelope(event, pos) for event, pos in stored_events(app)]


def last_of_type(app: PearlApp, type_: str) -> EventEnvelope:
    return [e for e in envelopes(app) if e.type == type_][-1]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("ApiKey", "api_key"), ("SeenAgain", "seen_again"), ("Org", "org"), ("Fixed", "fixed")],
)
def test_snake_converts_camel_case_when_given_class_names(name: str, expected: str) -> None:
    assert snake(name) == expected


def test_envelope_type_names_the_aggregate_and_event_when_finding_is_seen_again(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    app.record_finding(operator, project, finding_cmd())
    app.record_finding(operator, project, finding_cmd())

    types = [e.type for e in envelopes(app)]

    assert types[-2:] == ["pearl.finding.recorded.v2", "pearl.finding.seen_again.v1"]


def test_envelope_snake_cases_the_aggregate_when_event_is_of_an_api_key(
    app: PearlApp, org: str, org_admin: Principal
) -> None:
    app.revoke_api_key(org_admin, org, org_admin.id, "rotating")

    revoked = envelopes(app)[-1]

    assert (revoked.aggregate, revoked.type) == ("api_key", "pearl.api_key.revoked.v1")
    assert revoked.source == f"/pearl/{org}/api_key"
    assert revoked.data == {"reason": "rotating"}
    assert revoked.aggregateversion == 2


def test_names_of_returns_aggregate_and_event_when_given_each_event_class(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    app.record_finding(operator, project, finding_cmd())

    names = [names_of(event) for event, _ in stored_events(app)]

    assert names == [
        ("api_key", "issued"),  # bootstrap admin
        ("org", "created"),
        ("api_key", "issued"),  # org admin
        ("api_key", "issued"),  # operator
        ("project", "created"),
        ("finding", "recorded"),
    ]


def test_envelope_carries_metadata_outside_data_when_finding_is_recorded(
    app: PearlApp, org: str, operator: Principal, project: UUID
) -> None:
    result = app.record_finding(operator, project, finding_cmd())

    env = last_of_type(app, "pearl.finding.recorded.v2")

    assert env.org == org
    assert env.actor == operator.actor
    assert env.aggregateid == env.subject == result.ids["id"]
    assert env.aggregateversion == 1
    assert env.position == result.position
    assert env.source == f"/pearl/{org}/finding"
    assert not META & env.data.keys()
    assert "traceparent" not in env.data
    assert env.data["project_id"] == str(project)
    assert env.data["severity"] == "high"
    assert env.data["details"]["line"] == 42


def test_envelope_data_is_json_serialisable_when_it_holds_uuids_and_lists(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    app.record_finding(operator, project, finding_cmd(cwe=["CWE-89"]))

    for env in envelopes(app):
        decoded = msgspec.json.decode(msgspec.json.encode(env), type=EventEnvelope)
        assert decoded == env


def test_envelope_never_contains_salt_or_digest_when_api_key_is_issued(
    app: PearlApp, org: str, org_admin: Principal, issue_token: Callable[..., str]
) -> None:
    token = issue_token(org, "service")
    stored = [e for e, _ in stored_events(app) if type(e).__qualname__ == "ApiKey.Issued"]

    issued = [to_envelope(e, 1) for e in stored]

    assert stored and all(hasattr(e, "salt") and hasattr(e, "digest") for e in stored)
    for env, event in zip(issued, stored, strict=True):
        assert {"salt", "digest"}.isdisjoint(env.data)
        encoded = msgspec.json.encode(env).decode()
        assert event.salt not in encoded
        assert event.digest not in encoded
        assert token not in encoded
        assert set(env.data) == {"key_id", "name", "roles", "expires_at"}


def test_envelope_id_is_deterministic_when_the_same_event_is_mapped_twice(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    app.record_finding(operator, project, finding_cmd())
    event, pos = stored_events(app)[-1]

    first, second = to_envelope(event, pos), to_envelope(event, pos + 100)

    assert first.id == second.id
    assert first.id == str(stable_id("event", str(event.originator_id), "1"))


def test_envelope_ids_differ_when_events_are_different_versions(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    app.record_finding(operator, project, finding_cmd())
    app.record_finding(operator, project, finding_cmd())

    ids = [e.id for e in envelopes(app)]

    assert len(set(ids)) == len(ids)


def test_envelope_time_is_the_event_timestamp_when_mapped(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    app.record_finding(operator, project, finding_cmd())
    event, pos = stored_events(app)[-1]

    assert to_envelope(event, pos).time == event.timestamp.isoformat()


def test_envelope_has_no_traceparent_when_none_was_set_during_the_command(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    app.record_finding(operator, project, finding_cmd())

    assert last_of_type(app, "pearl.finding.recorded.v2").traceparent is None


def test_envelope_carries_the_traceparent_when_it_was_set_during_the_command(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    token = current_traceparent.set(TRACEPARENT)
    try:
        app.record_finding(operator, project, finding_cmd())
        app.record_finding(operator, project, finding_cmd())
    finally:
        current_traceparent.reset(token)

    recorded = last_of_type(app, "pearl.finding.recorded.v2")
    seen = last_of_type(app, "pearl.finding.seen_again.v1")
    assert recorded.traceparent == TRACEPARENT
    assert seen.traceparent == TRACEPARENT
    assert "traceparent" not in recorded.data


def test_traceparent_applies_only_to_events_caused_in_its_context_when_reset(
    app: PearlApp, operator: Principal, project: UUID
) -> None:
    token = current_traceparent.set(TRACEPARENT)
    try:
        app.record_finding(operator, project, finding_cmd())
    finally:
        current_traceparent.reset(token)

    app.record_finding(operator, project, finding_cmd())

    assert last_of_type(app, "pearl.finding.seen_again.v1").traceparent is None


def test_stable_id_is_deterministic_and_key_sensitive_when_called() -> None:
    parts: list[Any] = ["finding", "p", "fp"]

    assert stable_id(*parts) == stable_id(*parts)
    assert stable_id("finding", "p", "fp") != stable_id("finding", "p", "fp2")
    assert stable_id("org", "acme") != stable_id("project", "acme")
