"""CloudEvents-style envelope every event (and command) travels in on the bus."""

from __future__ import annotations

from typing import Any

from msgspec import Struct


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

    specversion: str = "1.0"
    id: str
    source: str = "unknown"
    type: str | None = None
    time: str | None = None
    traceparent: str | None = None
    data: dict[str, Any]


def event_type(aggregate: str, event: str, version: int = 1) -> str:
    """`pearl.<aggregate>.<event>.v<N>`, the stable wire name of an event."""
    return f"pearl.{aggregate}.{event}.v{version}"
