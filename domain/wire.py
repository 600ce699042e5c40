"""Explicit mapping from stored domain events to the wire contract (`EventEnvelope`)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts.envelope import EventEnvelope, event_type
from domain.base import stable_id

#: Event attributes that are envelope metadata, not payload.
META_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic", "org", "actor"}
)
#: Payload fields that never leave the event store (credential material).
PRIVATE_FIELDS: dict[str, frozenset[str]] = {"api_key": frozenset({"salt", "digest"})}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def names_of(event: Any) -> tuple[str, str]:
    """(aggregate, event) wire names from the event class, e.g. ('finding', 'seen_again')."""
    aggregate, _, name = type(event).__qualname__.rpartition(".")
    return snake(aggregate.rpartition(".")[2]), snake(name)


def _plain(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


def to_envelope(event: Any, position: int) -> EventEnvelope:
    """Map one domain event at its store position onto the published envelope."""
    aggregate, name = names_of(event)
    private = PRIVATE_FIELDS.get(aggregate, frozenset())
    fields: dict[str, Any] = dict(vars(event))
    data = {k: _plain(v) for k, v in fields.items() if k not in META_FIELDS and k not in private}
    traceparent = data.pop("traceparent", "") or None
    aggregate_id = str(event.originator_id)
    return EventEnvelope(
        id=str(stable_id("event", aggregate_id, str(event.originator_version))),
        source=f"/pearl/{fields['org']}/{aggregate}",
        type=event_type(aggregate, name, getattr(type(event), "class_version", 1)),
        subject=aggregate_id,
        time=event.timestamp.isoformat(),
        org=fields["org"],
        data=data,
        position=position,
        aggregate=aggregate,
        aggregateid=aggregate_id,
        aggregateversion=event.originator_version,
        actor=fields["actor"],
        traceparent=traceparent,
    )
