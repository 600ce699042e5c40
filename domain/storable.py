"""The last line of defence of the event store: no event a projection cannot apply is saved.

Input is validated where it enters (`contracts/text.py`); this check sits on the one path
every event takes into the store (the mapper), so a field that forgets its validation still
cannot store a NUL (PostgreSQL `text`/`jsonb` refuse it: every projection batch would fail)
or a lone surrogate (not UTF-8). The save is refused with `UnstorableText` instead.

Events stored before that rule may hold such text already. `storable_state` (reading) writes
each of those characters as the visible escape `\\uXXXX` (`contracts.text.escape_unstorable`)
and leaves every other byte alone; every reader of the store goes through it: this mapper's
`to_domain_event` (aggregates, time travel, event history) and
`domain.stored_decoder.EnvelopeDecoder` (relay, rebuild, audit verification), so all of them
see the same text.
ADR 0010 (docs/adr/0010-unstorable-text-in-old-events.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent

from contracts.text import escape_unstorable_in, unstorable_at
from domain.errors import UnstorableText
from domain.idempotency import IdempotencyClaim

#: A JSON `\u0000` escape (an odd number of backslashes before `u0000`).
_NUL_ESCAPE = re.compile(rb"(?:^|[^\\])(?:\\\\)*\\u0000")
#: A JSON escape of NUL or of a surrogate (lone unless a pair; the transcoder writes neither:
#: it writes every character but controls, quote and backslash as UTF-8).
_SUSPECT_ESCAPE = re.compile(rb"(?:^|[^\\])(?:\\\\)*\\u(?:0000|[dD][89a-fA-F])")
E = TypeVar("E")
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def plain_json(mapper: Mapper[Any]) -> bool:
    """The mapper's stored state is the JSON transcoder's bytes (no cipher, no compressor)."""
    return (
        mapper.cipher is None
        and mapper.compressor is None
        and type(mapper.transcoder) is JSONTranscoder
    )


def storable_state(state: bytes) -> bytes:
    """A stored event's JSON state with NUL and lone surrogates in its text escaped visibly.

    Clean state (every event stored since the rule) is returned as it is, the same object,
    after one or two substring scans at C speed (under a microsecond for a typical event).
    Only state holding a JSON escape of NUL or of a surrogate is decoded, and rewritten only
    if a string or key really holds one: as the transcoder writes it (compact, UTF-8, key
    order kept), so nothing else changes.
    """
    if b"\\" not in state or b"\\u" not in state:
        return state  # no JSON escape at all (`memchr`), or none of the form `\uXXXX`
    if not _SUSPECT_ESCAPE.search(state):
        return state  # a control other than NUL, or an escaped backslash before `u0000`
    try:
        value = json.loads(state)
    except ValueError:  # not JSON: the mapper reports it as it always has
        return state
    if unstorable_at(value) is None:
        return state  # a surrogate pair: a character every store can hold
    return _ENCODE(escape_unstorable_in(value)).encode()


def storable_event(event: E) -> E:
    """A decoded domain event with NUL and lone surrogates in its state escaped visibly (for
    mappers whose state is not plain JSON; `storable_state` does it on the bytes otherwise)."""
    state = vars(event)
    if unstorable_at(state) is not None:
        object.__setattr__(event, "__dict__", escape_unstorable_in(state))
    return event


def _refuse(event: object, where: str) -> UnstorableText:
    name = type(event).__qualname__
    return UnstorableText(
        f"{name} would hold NUL or a lone surrogate at `{where}`: such text cannot be stored"
    )


class StorableMapper(Mapper[UUID]):
    """The library's mapper, refusing events whose state holds NUL or a lone surrogate, and
    reading such text of events stored before that rule escaped (`storable_state`)."""

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        if not plain_json(self):
            return storable_event(super().to_domain_event(stored_event))
        state = storable_state(stored_event.state)
        if state is not stored_event.state:
            stored_event = replace(stored_event, state=state)
        return super().to_domain_event(stored_event)

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        if not plain_json(self):
            found = unstorable_at(dict(vars(domain_event)))
            if found:
                raise _refuse(domain_event, found)
            return super().to_stored_event(domain_event)
        try:
            stored = super().to_stored_event(domain_event)
        except UnicodeEncodeError:  # a lone surrogate: the transcoder cannot write it as UTF-8
            raise _refuse(domain_event, unstorable_at(dict(vars(domain_event))) or "$") from None
        # The JSON transcoder writes NUL as `\u0000`: one scan of the bytes, at C speed.
        if b"\\u0000" in stored.state and _NUL_ESCAPE.search(stored.state):
            raise _refuse(domain_event, unstorable_at(dict(vars(domain_event))) or "$")
        return stored


def refuse_unstorable_claim(claim: Any) -> None:
    """An idempotency claim (key, org, answer) is stored too: the same rule holds for it."""
    if isinstance(claim, IdempotencyClaim):
        found = unstorable_at([claim.org, claim.key, claim.request_hash, claim.response])
        if found:
            raise UnstorableText("the idempotency key or its answer holds NUL or a lone surrogate")
