"""Base aggregate: every event carries its org, its actor and the trace it was caused in."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

#: Namespace for PeaRL's deterministic aggregate ids.
PEARL_NS = UUID("5f1d8c3e-8a53-4c64-9a0e-6f2b2c0d9e11")

#: W3C traceparent of the request being handled; stamped on every event it causes.
current_traceparent: ContextVar[str] = ContextVar("pearl_traceparent", default="")
#: Which way the command being handled came in (http, nats, mcp, cli); named in denials.
current_channel: ContextVar[str] = ContextVar("pearl_channel", default="internal")


def stable_id(*parts: str) -> UUID:
    """A deterministic id from its natural key, so re-submitting the same thing is a no-op."""
    return uuid5(PEARL_NS, "/".join(parts))


class PearlAggregate(Aggregate):
    """Aggregate whose events always say which org they belong to and who caused them."""

    org: str

    class Event(Aggregate.Event):
        org: str
        actor: str
        traceparent: str

    class Created(Event, Aggregate.Created):
        pass

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        kwargs.setdefault("org", self.org)
        kwargs.setdefault("traceparent", current_traceparent.get())
        super().trigger_event(event_class, **kwargs)

    @classmethod
    def _create(cls, event_class: Any, *, id: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("traceparent", current_traceparent.get())
        return super()._create(event_class, id=id, **kwargs)
