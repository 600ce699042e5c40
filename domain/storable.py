"""The last line of defence of the event store: no event a projection cannot apply is saved.

Input is validated where it enters (`contracts/text.py`); this check sits on the one path
every event takes into the store (the mapper), so a field that forgets its validation still
cannot store a NUL (PostgreSQL `text`/`jsonb` refuse it: every projection batch would fail)
or a lone surrogate (not UTF-8). The save is refused with `UnstorableText` instead.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent

from contracts.text import unstorable_at
from domain.errors import UnstorableText
from domain.idempotency import IdempotencyClaim

#: A JSON `\u0000` escape (an odd number of backslashes before `u0000`).
_NUL_ESCAPE = re.compile(rb"(?:^|[^\\])(?:\\\\)*\\u0000")


def _refuse(event: object, where: str) -> UnstorableText:
    name = type(event).__qualname__
    return UnstorableText(
        f"{name} would hold NUL or a lone surrogate at `{where}`: such text cannot be stored"
    )


class StorableMapper(Mapper[UUID]):
    """The library's mapper, refusing events whose state holds NUL or a lone surrogate."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        plain_json = (
            self.cipher is None
            and self.compressor is None
            and type(self.transcoder) is JSONTranscoder
        )
        if not plain_json:
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
