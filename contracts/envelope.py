"""CloudEvents-style envelope every event (and command) travels in on the bus."""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import Meta, Struct

from contracts.text import LINE

#: A header-like envelope field: one line, bounded.
Field = Annotated[str, LINE, Meta(max_length=500)]


class EventEnvelope(Struct, frozen=True, kw_only=True):
    """One stored domain event as published on `pearl.evt.…`; `position` is its store position."""

    specversion: str = "1.0"
    id: str
    source: str
    type: str
    subject: str
    time: str
    org: str
    datacontenttype: str = "application/json"
    data: dict[str, Any]
    position: int
    aggregate: str
    aggregateid: str
    aggregateversion: int
    actor: str
    traceparent: str | None = None


class CommandEnvelope(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A command published on `pearl.cmd.<org>.<aggregate>.<command>`.

    `id` is the command's idempotency key: the same id is processed once. The principal's
    credential travels in the `Authorization` message header, never in the body.
    """

    specversion: Field = "1.0"
    id: Annotated[str, LINE, Meta(min_length=1, max_length=200)]
    source: Field = "unknown"
    type: Field | None = None
    time: Field | None = None
    traceparent: Field | None = None
    data: dict[str, Any]


def event_type(aggregate: str, event: str, version: int = 1) -> str:
    """`pearl.<aggregate>.<event>.v<N>`, the stable wire name of an event."""
    return f"pearl.{aggregate}.{event}.v{version}"
