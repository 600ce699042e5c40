"""Bounded-memory JSON reading for scanner reports: head sniffing, a depth guard, streamed items."""

from __future__ import annotations

import io
from bisect import bisect_right
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from itertools import accumulate
from operator import itemgetter
from types import ModuleType
from typing import Any, Protocol, TypeVar, cast

import ijson
from ijson.common import ObjectBuilder

from domain.errors import ReportError, ReportTooComplex
from domain.scanners.spill import MemoryStore, SpillFile, Store

T = TypeVar("T")

HEAD_SIZE = 64 * 1024
MAX_DEPTH = 256
#: Longest ijson prefix (dotted key path) allowed: every event of the prefixed parsers carries it.
MAX_PATH = 4096
#: Longest run of bytes without a JSON event (one string, number or blank run).
MAX_TOKEN = 4 * 1024 * 1024
#: Most JSON events one streamed item (e.g. one SARIF result) may hold: it is built in memory.
MAX_ITEM_EVENTS = 200_000
#: Most items (findings' elements, e.g. SARIF results) one report may hold: each costs time
#: and a few dozen bytes of de-duplication state, however small it is.
MAX_ITEMS = 1_000_000
#: Most JSON events a whole-document format (CycloneDX, npm audit, Snyk) may hold.
MAX_DOCUMENT_EVENTS = 2_000_000
#: Most JSON events of side values kept for the whole pass (e.g. SARIF rules).
MAX_META_EVENTS = 500_000
#: Bytes the prefixed parsers digest at a time, which bounds the events they hold at once.
CHUNK = 16 * 1024
_BOM = b"\xef\xbb\xbf"
_STARTS = frozenset({"start_map", "start_array"})
_ENDS = frozenset({"end_map", "end_array"})
_DELTA = {
    "start_map": 1,
    "start_array": 1,
    "end_map": -1,
    "end_array": -1,
    "map_key": 0,
    "string": 0,
    "number": 0,
    "integer": 0,
    "double": 0,
    "boolean": 0,
    "null": 0,
}
_PREFIX = itemgetter(0)
_EVENT = itemgetter(1)
_TOP_VALUE_CAP = 256


def _backend() -> ModuleType:
    """Return ijson's C (yajl2_c) backend when compiled in, else ijson's default backend."""
    try:
        return cast(ModuleType, ijson.get_backend("yajl2_c"))
    except ImportError:
        return cast(ModuleType, ijson)


BACKEND = _backend()


class Readable(Protocol):
    """The one method PeaRL needs from a binary stream."""

    def read(self, size: int = -1, /) -> bytes:
        """Return up to `size` bytes; b"" at end of stream."""


def too_deep() -> ReportError:
    """Build the error for documents nested past MAX_DEPTH, which no scanner emits."""
    return ReportTooComplex(
        f"The report nests JSON deeper than {MAX_DEPTH} levels, far more than any supported "
        "scanner produces, so it was rejected."
    )


def too_complex(what: str) -> ReportError:
    """Build the error for a report past one of the shape limits that bound parsing memory."""
    return ReportTooComplex(
        f"The report {what}, far more than any supported scanner produces, so it was rejected."
    )


def json_error(exc: Exception) -> ReportError:
    """Turn an ijson/yajl parse error into one human sentence (truncated vs. malformed)."""
    if is_eof(exc):
        return ReportError("The report is truncated: the JSON document ends before it is complete.")
    return ReportError(f"The report is not valid JSON ({_first_line(exc)}).")


def is_eof(exc: Exception) -> bool:
    """Return True when a parse error only means the input stopped early."""
    detail = _first_line(exc)
    return "premature EOF" in detail or "Incomplete JSON" in detail


def _first_line(exc: Exception) -> str:
    """Return the first line of a yajl error message, whether it arrived as str or bytes."""
    raw: object = exc.args[0] if exc.args else str(exc)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if text.startswith(("b'", 'b"')):
        text = text[2:]
    lines = [line.strip() for line in text.replace("\\n", "\n").splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else "parse error"


@dataclass(frozen=True, slots=True)
class HeadInfo:
    """What the first 64 KiB reveal: root type, dotted key paths, top-level scalar values."""

    root: str | None
    keys: frozenset[str]
    top: tuple[str, ...]
    values: Mapping[str, object]
    empty: bool
    complete: bool

    def any(self, *paths: str) -> bool:
        """Return True when at least one dotted key path was seen in the head."""
        return any(path in self.keys for path in paths)


@dataclass(slots=True)
class _HeadState:
    """Mutable accumulator for sniff_head."""

    root: str | None = None
    depth: int = 0
    events: int = 0


def sniff_head(head: bytes, *, whole: bool) -> HeadInfo:
    """Walk the head's JSON events (stopping at its cut) and summarise them for detection."""
    state = _HeadState()
    keys: set[str] = set()
    top: list[str] = []
    values: dict[str, object] = {}
    complete = True
    try:
        for prefix, event, value in BACKEND.parse(io.BytesIO(head), buf_size=CHUNK, use_float=True):
            _note_event(state, keys, top, values, (prefix, event, value))
    except ijson.JSONError as exc:
        if whole or not is_eof(exc):
            raise json_error(exc) from exc
        complete = False
    empty = complete and state.events == 2 and state.root in ("object", "array")
    return HeadInfo(state.root, frozenset(keys), tuple(top), values, empty, complete)


def _note_event(
    state: _HeadState,
    keys: set[str],
    top: list[str],
    values: dict[str, object],
    item: tuple[str, str, Any],
) -> None:
    """Fold one head event into the sniffing summary, enforcing the depth limit."""
    prefix, event, value = item
    if state.root is None:
        state.root = {"start_map": "object", "start_array": "array"}.get(event, "scalar")
    state.events += 1
    state.depth += _DELTA[event]
    if state.depth > MAX_DEPTH:
        raise too_deep()
    if event == "map_key":
        keys.add(f"{prefix}.{value}" if prefix else str(value))
        if not prefix:
            top.append(str(value))
    elif state.depth == 1 and prefix and "." not in prefix and event not in _ENDS:
        values[prefix] = value[:_TOP_VALUE_CAP] if isinstance(value, str) else value


class _Chain:
    """Replays the already-read head, then continues with the rest of the stream."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self._head = head
        self._pos = 0
        self._rest = rest

    def read(self, size: int = -1, /) -> bytes:
        """Return the next bytes: from the head first, then from the underlying stream."""
        if self._pos < len(self._head):
            end = len(self._head) if size < 0 else self._pos + size
            piece = self._head[self._pos : end]
            self._pos += len(piece)
            return piece
        chunk = self._rest.read(size)
        if not isinstance(chunk, bytes | bytearray):
            raise ReportError("The report stream yields text; open the report in binary mode.")
        return bytes(chunk)


class Guard:
    """Checks every byte of a report against the shape limits before any parser builds from it.

    ijson's prefixed parsers hold, for every event of a chunk, a prefix string as long as the
    dotted path to it, and its item builders hold a whole item: a small but deeply nested or
    long-keyed document costs memory quadratic in its size. This guard reads ahead of them with
    ijson's prefix-free C parser (a few bytes of state per open container) and refuses a
    report the moment it passes MAX_DEPTH, MAX_PATH, MAX_TOKEN or the item size (see `watch`),
    so no chunk that breaks a limit ever reaches a parser that would build from it.
    """

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self._events: list[tuple[str, Any]] = ijson.sendable_list()
        self._coro = BACKEND.basic_parse_coro(self._events)
        self._first = True
        self._quiet = 0
        # Per open container: is it an array, its ijson prefix length, the event it opened at.
        self._arrays: list[bool] = []
        self._lengths: list[int] = []
        self._opened: list[int] = []
        # The prefix components of the innermost open container (the root has none).
        self._names: list[str] = []
        self._key = ""
        self._seen = 0
        self._item: list[str] | None = None
        self._item_limit = MAX_ITEM_EVENTS
        self._item_depth = 0

    def watch(self, prefix: str) -> None:
        """Bound the events of each value at `prefix` (the items a format builds one by one)."""
        item = prefix.split(".") if prefix else []
        self._item = item
        self._item_limit = MAX_ITEM_EVENTS if prefix else MAX_DOCUMENT_EVENTS
        inside = len(self._names) >= len(item) and self._names[: len(item)] == item
        self._item_depth = len(item) + 1 if inside and self._arrays else 0
        self._check_item(self._seen)

    def read(self, size: int = -1, /) -> bytes:
        """Return the next bytes of the stream once the guard has checked them."""
        chunk = self._stream.read(size)
        if not isinstance(chunk, bytes | bytearray):
            raise ReportError("The report stream yields text; open the report in binary mode.")
        chunk = bytes(chunk)
        if self._first and chunk:
            self._first = False
            piece = chunk.removeprefix(_BOM)
        else:
            piece = chunk
        for start in range(0, len(piece), CHUNK):
            self._check(piece[start : start + CHUNK])
        return chunk

    def check_all(self, data: bytes) -> None:
        """Check a whole in-memory document (already without its BOM)."""
        self._first = False
        for start in range(0, len(data), CHUNK):
            self._check(data[start : start + CHUNK])

    def _check(self, piece: bytes) -> None:
        """Feed one piece to the prefix-free parser and fold its events into the limits."""
        try:
            self._coro.send(piece)
        except ijson.JSONError as exc:
            if not is_eof(exc):
                raise json_error(exc) from exc
        events = self._events
        if not events:
            self._quiet += len(piece)
            if self._quiet > MAX_TOKEN:
                raise too_complex(f"holds a single JSON token longer than {MAX_TOKEN} bytes")
            return
        self._quiet = 0
        self._fold(events)
        events.clear()

    def _fold(self, events: list[tuple[str, Any]]) -> None:
        """Track depth, prefix length and the current item's size over a chunk's events."""
        arrays, lengths, names, opened = self._arrays, self._lengths, self._names, self._opened
        for index, (event, value) in enumerate(events, self._seen):
            if event == "map_key":
                self._key = value
                if lengths[-1] + 1 + len(value) > MAX_PATH:
                    raise too_complex(f"has a key path longer than {MAX_PATH} characters")
            elif event == "start_map" or event == "start_array":
                self._open(event == "start_array", index)
            elif event == "end_map" or event == "end_array":
                if len(arrays) == self._item_depth:
                    self._check_item(index)
                    self._item_depth = 0
                arrays.pop()
                lengths.pop()
                opened.pop()
                if names and len(names) >= len(arrays):
                    names.pop()
        self._seen += len(events)
        self._check_item(self._seen)

    def _open(self, array: bool, index: int) -> None:
        """Enter a container: check the depth limit, note its prefix, see if it is an item."""
        arrays, names = self._arrays, self._names
        if len(arrays) >= MAX_DEPTH:
            raise too_deep()
        if arrays:
            slot = "item" if arrays[-1] else self._key
            names.append(slot)
            self._lengths.append(self._lengths[-1] + 1 + len(slot))
        else:
            self._lengths.append(0)
        arrays.append(array)
        self._opened.append(index)
        if self._item is not None and not self._item_depth and names == self._item:
            self._item_depth = len(arrays)

    def _check_item(self, now: int) -> None:
        """Refuse the report once the open item (if any) holds more events than allowed."""
        if self._item_depth and now - self._opened[self._item_depth - 1] > self._item_limit:
            raise too_complex(f"holds one element of more than {self._item_limit} JSON values")


def read_head(stream: Readable) -> tuple[bytes, bool]:
    """Read up to HEAD_SIZE bytes (a BOM dropped); also say whether that was the whole stream."""
    parts: list[bytes] = []
    size = 0
    while size < HEAD_SIZE:
        chunk = stream.read(HEAD_SIZE - size)
        if not isinstance(chunk, bytes | bytearray):
            raise ReportError("The report stream yields text; open the report in binary mode.")
        if not chunk:
            return _drop_bom(b"".join(parts)), True
        parts.append(bytes(chunk))
        size += len(chunk)
    return _drop_bom(b"".join(parts)), False


def _drop_bom(head: bytes) -> bytes:
    """Strip a UTF-8 byte-order mark, which some Windows tools prepend to JSON."""
    return head[len(_BOM) :] if head.startswith(_BOM) else head


class Source:
    """A report being parsed: its sniffed head plus the not-yet-read rest of the stream.

    With `spill` set, the records a format keeps across the pass (see store) go to anonymous
    temporary files in `spill_dir` (None: the system's temporary directory) instead of memory;
    close() releases them.
    """

    def __init__(
        self, stream: Readable, *, spill: bool = False, spill_dir: str | None = None
    ) -> None:
        self._stores: list[Store[Any]] = []
        self._spill = spill
        self._spill_dir = spill_dir
        self._guard = Guard(stream)
        head, whole = read_head(self._guard)
        if not head:
            raise ReportError("The report is empty (0 bytes); expected a JSON scanner report.")
        if whole and not head.strip():
            raise ReportError("The report contains only whitespace; expected a JSON document.")
        self.head = head
        self.info = sniff_head(head, whole=whole)
        self._rest: Readable = self._guard
        self._used = False

    def store(self, record: type[T]) -> Store[T]:
        """Return where a format keeps records until the pass ends: memory, or a spill file."""
        store: Store[T] = SpillFile(record, self._spill_dir) if self._spill else MemoryStore()
        self._stores.append(store)
        return store

    def close(self) -> None:
        """Release every store handed out (spill files are deleted)."""
        while self._stores:
            self._stores.pop().close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def root(self) -> str | None:
        """Return "object", "array" or "scalar": the JSON type of the whole document."""
        return self.info.root

    def scan(self, prefix: str, *, group: str = "", meta: Collection[str] = ()) -> JsonScan:
        """Start the single streaming pass over the document (it can be started only once)."""
        if self._used:
            raise RuntimeError("a report Source can be scanned only once")
        self._used = True
        self._guard.watch(prefix)
        return JsonScan(_Chain(self.head, self._rest), prefix, group=group, meta=meta)


class JsonScan:
    """One pass over a document: items at `prefix` built in C, side values captured en route.

    A push parser sees every chunk first: it enforces MAX_DEPTH, counts where each `group`
    container starts (so items can be attributed to e.g. their SARIF run) and captures the
    small values at the `meta` prefixes, wherever in the document they appear.
    """

    def __init__(self, reader: _Chain, prefix: str, *, group: str, meta: Collection[str]) -> None:
        self._reader = reader
        self._prefix = prefix
        self._item_start = (prefix, "start_map", None)
        self._group = group
        self._meta = frozenset(meta)
        self._watch = self._meta | ({group} if group else frozenset())
        self._events: list[tuple[str, str, Any]] = ijson.sendable_list()
        self._coro = BACKEND.parse_coro(self._events, use_float=True)
        self._depth = 0
        self._started = 0
        self._bounds: list[int] = []
        self._captured: dict[str, list[tuple[int, object]]] = {}
        self._builder: ObjectBuilder | None = None
        self._building = ""
        self._builder_depth = 0
        self._closed = False
        self._meta_events = 0

    def read(self, size: int = -1, /) -> bytes:
        """Hand the next chunk to ijson after the side parser has digested it."""
        if size == 0:
            return b""
        chunk = self._reader.read(CHUNK if size < 0 else min(size, CHUNK))
        if chunk:
            self._coro.send(chunk)
            self._digest()
        elif not self._closed:
            self._closed = True
            self._coro.close()
            self._digest()
        return chunk

    def items(self) -> Iterator[object]:
        """Yield each value found at the scan prefix, then drain the stream to validate it."""
        yield from BACKEND.items(self, self._prefix, use_float=True)
        while self.read(HEAD_SIZE):
            pass

    @property
    def groups(self) -> int:
        """Return how many group containers (e.g. SARIF runs) have started so far."""
        return len(self._bounds)

    def group_of(self, ordinal: int) -> int:
        """Return the index of the group container holding the ordinal-th item (-1: none)."""
        return bisect_right(self._bounds, ordinal) - 1

    def values(self, prefix: str, group: int | None = None) -> list[object]:
        """Return the captured values at a meta prefix, optionally only those of one group."""
        found = self._captured.get(prefix, [])
        return [value for where, value in found if group is None or where == group]

    def first(self, prefix: str, group: int | None = None) -> object:
        """Return the first captured value at a meta prefix (None when it never appeared)."""
        found = self.values(prefix, group)
        return found[0] if found else None

    def _digest(self) -> None:
        """Check depth over the chunk's events and capture meta values, mostly at C speed."""
        events = self._events
        if not events:
            return
        depths = list(accumulate(map(_DELTA.__getitem__, map(_EVENT, events)), initial=self._depth))
        if max(depths) > MAX_DEPTH:
            raise too_deep()
        self._depth = depths[-1]
        if self._builder is not None or not self._watch.isdisjoint(map(_PREFIX, events)):
            self._digest_slowly(events)
        else:
            self._started += events.count(self._item_start)
        events.clear()
        if self._started > MAX_ITEMS:
            raise too_complex(f"holds more than {MAX_ITEMS} results")

    def _digest_slowly(self, events: list[tuple[str, str, Any]]) -> None:
        """Walk the chunk event by event because it holds group starts or meta values."""
        for prefix, event, value in events:
            if self._builder is not None:
                self._feed(event, value)
                continue
            if prefix == self._prefix and event == "start_map":
                self._started += 1
            if prefix == self._group and event in _STARTS:
                self._bounds.append(self._started)
            if prefix in self._meta and event != "map_key":
                self._begin(prefix, event, value)

    def _begin(self, prefix: str, event: str, value: object) -> None:
        """Capture a scalar meta value, or start building a container one."""
        if event not in _STARTS:
            self._store(prefix, value)
            return
        self._builder = ObjectBuilder()
        self._building = prefix
        self._builder_depth = 0
        self._feed(event, value)

    def _feed(self, event: str, value: object) -> None:
        """Feed one event to the active meta builder; store the value once it closes."""
        builder = self._builder
        if builder is None:
            return
        builder.event(event, value)
        self._count_meta()
        self._builder_depth += _DELTA[event]
        if self._builder_depth == 0:
            self._store(self._building, builder.value)
            self._builder = None

    def _count_meta(self) -> None:
        """Refuse a report whose kept side values (rules, versions) outgrow MAX_META_EVENTS."""
        self._meta_events += 1
        if self._meta_events > MAX_META_EVENTS:
            raise too_complex(f"holds more than {MAX_META_EVENTS} JSON values of metadata")

    def _store(self, prefix: str, value: object) -> None:
        """Remember a meta value together with the group it appeared in."""
        self._count_meta()
        self._captured.setdefault(prefix, []).append((len(self._bounds) - 1, value))
