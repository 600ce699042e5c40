"""Idempotency claims: recorded by the event recorder in the same transaction as the events.

A command that carries an idempotency key (HTTP `Idempotency-Key`, or a bus command's id) saves
a claim together with its events. A second command with the same key finds the claim and gets
the first answer again; with a different body it is refused. Two racing commands with one key
cannot both commit: the claim's primary key makes the loser's whole transaction roll back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """What a command with a key records: the request's digest and its answer (sans position)."""

    org: str
    key: str
    request_hash: str
    response: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A stored claim, with the store position of the command's last event."""

    request_hash: str
    response: dict[str, Any]
    position: int


@runtime_checkable
class IdempotencyStore(Protocol):
    """A recorder that stores claims atomically with events and can look them up."""

    def find_idempotency(self, org: str, key: str) -> IdempotencyRecord | None: ...

    def select_events_for(
        self, originator_ids: Sequence[UUID], upto: int | None = None
    ) -> list[StoredEvent]:
        """Every stored event of the given aggregates (up to a store position), in one query."""
        ...


def request_digest(*parts: Any) -> str:
    """Stable SHA-256 of a request's meaningful parts (JSON-canonicalised)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class MemoryIdempotentRecorder(POPOApplicationRecorder):
    """In-memory recorder with idempotency claims, for unit tests without a database."""

    def __init__(self) -> None:
        super().__init__()
        self._claims: dict[tuple[str, str], IdempotencyRecord] = {}

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        claim: IdempotencyClaim | None = kwargs.get("idempotency")
        with self._database_lock:
            if claim is not None and (claim.org, claim.key) in self._claims:
                raise IntegrityError(f"idempotency key {claim.key!r} already used")
            ids = super().insert_events(stored_events, **kwargs)
            if claim is not None:
                position = max(ids) if ids else 0
                self._claims[(claim.org, claim.key)] = IdempotencyRecord(
                    claim.request_hash, claim.response, position
                )
            return ids

    def find_idempotency(self, org: str, key: str) -> IdempotencyRecord | None:
        with self._database_lock:
            return self._claims.get((org, key))

    def select_events_for(
        self, originator_ids: Sequence[UUID], upto: int | None = None
    ) -> list[StoredEvent]:
        with self._database_lock:
            wanted = {str(i) for i in originator_ids}
            events = self._stored_events if upto is None else self._stored_events[:upto]
            chosen = [e for e in events if str(e.originator_id) in wanted]
            return sorted(chosen, key=lambda e: (str(e.originator_id), e.originator_version))
