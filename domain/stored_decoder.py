"""Stored events straight to `EventEnvelope`, without building the domain event objects.

`to_envelope(mapper.to_domain_event(stored), position)` costs tens of microseconds an event; a
replay of a large store spends most of its time there. This reads the transcoder's JSON with
msgspec and maps it the same way `domain.wire.to_envelope` does. Anything it is not sure about
(a cipher or compressor, an upcast, an unknown transcoding, JSON msgspec refuses) goes through
the mapper and `to_envelope`, so the result is always the same.

Text no store can hold (NUL, lone surrogates) in events stored before the rule against it is
escaped visibly first (`domain.storable.storable_state`, the same function the mapper reads
through), so what the relay publishes, the rebuild replays and audit verification hashes agree.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import (
    DatetimeAsISO,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import resolve_topic

from contracts.envelope import EventEnvelope, event_type
from domain.base import PEARL_NS
from domain.storable import plain_json, storable_event, storable_state
from domain.wire import META_FIELDS, PRIVATE_FIELDS, snake, to_envelope

#: Keys of the stored state that never reach the envelope's data.
_CLASS_VERSION = "class_version"
_TYPE, _DATA = "_type_", "_data_"
_MARK = b'"_type_"'
#: uuid5(PEARL_NS, "event/…") up to the aggregate id (`domain.base.stable_id("event", …)`).
_EVENT_ID_PREFIX = hashlib.sha1(PEARL_NS.bytes + b"event/", usedforsecurity=False)
_VARIANT = "89ab" * 4
#: What `datetime.isoformat()` writes for an aware time: it reads back as the same text.
_ISOFORMAT = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(?!000000)\d{6})?[+-]\d\d:\d\d", re.ASCII
)


class _Unsure(Exception):
    """The fast path cannot vouch for this event: let the mapper decode it."""


@dataclass(frozen=True, slots=True)
class _Kind:
    """What the envelope takes from an event class (looked up once per topic)."""

    aggregate: str
    type: str
    class_version: int
    skip: frozenset[str]


def event_id(aggregate_id: str, version: int) -> str:
    """`str(stable_id("event", aggregate_id, str(version)))`, computed without UUID objects."""
    digest = _EVENT_ID_PREFIX.copy()
    digest.update(f"{aggregate_id}/{version}".encode())
    h = digest.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[int(h[16], 16)]}{h[17:20]}-{h[20:32]}"


def _plain_transcoded(value: Any) -> Any:
    """Replace the transcoder's `{"_type_", "_data_"}` objects as the mapper + `_plain` would."""
    if isinstance(value, list):
        return [_plain_transcoded(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 2 and _TYPE in value and _DATA in value:
        name, data = value[_TYPE], value[_DATA]
        if name == "uuid_hex" and isinstance(data, str):
            return str(UUID(data))
        if name == "datetime_iso" and isinstance(data, str):
            return datetime.fromisoformat(data).isoformat()
        raise _Unsure(name)
    return {k: _plain_transcoded(v) for k, v in value.items()}


class EnvelopeDecoder:
    """Decodes stored events (as rows of the notification log) into envelopes, fast."""

    def __init__(self, mapper: Mapper[Any]) -> None:
        self._mapper = mapper
        transcoder = mapper.transcoder
        self._fast = (
            mapper.cipher is None
            and mapper.compressor is None
            and type(transcoder) is JSONTranscoder
            and type(transcoder.names.get("uuid_hex")) is UUIDAsHex
            and type(transcoder.names.get("datetime_iso")) is DatetimeAsISO
        )
        #: the state is the transcoder's JSON: old unstorable text is escaped on the bytes
        self._plain = plain_json(mapper)
        self._kinds: dict[str, _Kind | None] = {}
        self._decode = msgspec.json.Decoder(float_hook=self._float).decode
        #: events decoded with a float in them or by the mapper: their data may hold more than
        #: strings, integers, booleans, nulls, lists and dicts (see `json_native`)
        self.unsure = 0

    def _float(self, literal: str) -> float:
        self.unsure += 1
        return float(literal)

    def envelope(
        self, position: int, originator_id: UUID | str, version: int, topic: str, state: bytes
    ) -> EventEnvelope:
        """The envelope of one stored event at its notification position."""
        if self._plain:
            state = storable_state(state)
        kind = self._kinds[topic] if topic in self._kinds else self._learn(topic)
        if kind is not None:
            try:
                return self._fast_envelope(kind, position, str(originator_id), version, state)
            except (_Unsure, msgspec.MsgspecError, KeyError, TypeError, ValueError):
                pass
        self.unsure += 1
        stored = StoredEvent(originator_id, version, topic, state)
        event = self._mapper.to_domain_event(stored)
        return to_envelope(event if self._plain else storable_event(event), position)

    def _learn(self, topic: str) -> _Kind | None:
        kind: _Kind | None = None
        if self._fast:
            try:
                cls = resolve_topic(topic)
            except Exception:  # the mapper will raise the proper error
                cls = None
            if cls is not None:
                # as `domain.wire.names_of`, from the class
                owner, _, name = cls.__qualname__.rpartition(".")
                aggregate = snake(owner.rpartition(".")[2])
                version = getattr(cls, "class_version", 1)
                skip = META_FIELDS | PRIVATE_FIELDS.get(aggregate, frozenset()) | {_CLASS_VERSION}
                kind = _Kind(aggregate, event_type(aggregate, snake(name), version), version, skip)
        self._kinds[topic] = kind
        return kind

    def _fast_envelope(
        self, kind: _Kind, position: int, aggregate_id: str, version: int, state: bytes
    ) -> EventEnvelope:
        fields = self._decode(state)
        if type(fields) is not dict:
            raise _Unsure("state")
        if fields.get(_CLASS_VERSION, 1) != kind.class_version:
            raise _Unsure("upcast")  # the class's upcasters run on the mapper's objects
        stamp = fields["timestamp"]
        if type(stamp) is not dict or stamp.get(_TYPE) != "datetime_iso" or len(stamp) != 2:
            raise _Unsure("timestamp")
        time = stamp[_DATA]
        if type(time) is not str or not _ISOFORMAT.fullmatch(time):
            time = datetime.fromisoformat(time).isoformat()
        skip = kind.skip
        if state.count(_MARK) > 1:
            data = {k: _plain_transcoded(v) for k, v in fields.items() if k not in skip}
        else:
            data = {k: v for k, v in fields.items() if k not in skip}
        traceparent = data.pop("traceparent", "") or None
        org, actor = fields["org"], fields["actor"]
        if type(org) is not str or type(actor) is not str:
            raise _Unsure("org")
        return EventEnvelope(
            id=event_id(aggregate_id, version),
            source=f"/pearl/{org}/{kind.aggregate}",
            type=kind.type,
            subject=aggregate_id,
            time=time,
            org=org,
            data=data,
            position=position,
            aggregate=kind.aggregate,
            aggregateid=aggregate_id,
            aggregateversion=version,
            actor=actor,
            traceparent=traceparent,
        )
